import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from budget import services
from budget.policies import NANOS_PER_USD, usd
from rhetor_site.errors import RhetorError

PER = {"token": 1, "1k": 1_000, "1m": 1_000_000}


def _nanos_per_token(value: str, per: int, name: str) -> int:
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise CommandError(f"--{name} {value!r} is not a decimal amount of USD") from exc
    nanos = amount * NANOS_PER_USD / per
    if not amount.is_finite() or amount < 0 or nanos != nanos.to_integral_value():
        raise CommandError(
            f"--{name} {value!r} is not a whole number of nano-USD per token (or is negative)"
        )
    return int(nanos)


class Command(BaseCommand):
    help = (
        "Set the price of a model (USD per token by default) from a date on; earlier prices "
        "stay as history. Example: set_price openai gpt-4o --input 0.0000025 --output 0.00001"
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider")
        parser.add_argument("model", help='Model id or family, or "*" for every model.')
        parser.add_argument("--input", required=True, help="USD per input token (see --per).")
        parser.add_argument("--output", required=True, help="USD per output token.")
        parser.add_argument("--per", default="token", choices=sorted(PER))
        parser.add_argument(
            "--from",
            dest="effective_from",
            default=None,
            help="YYYY-MM-DD (midnight UTC) or an ISO datetime; default now.",
        )
        parser.add_argument("--source", default="set_price command")

    def handle(self, *args: Any, **options: Any) -> str | None:
        per = PER[options["per"]]
        input_price = _nanos_per_token(options["input"], per, "input")
        output_price = _nanos_per_token(options["output"], per, "output")
        effective_from = None
        if options["effective_from"]:
            try:
                effective_from = dt.datetime.fromisoformat(options["effective_from"])
            except ValueError as exc:
                raise CommandError(f"--from {options['effective_from']!r} is not a date") from exc
            if timezone.is_naive(effective_from):
                effective_from = effective_from.replace(tzinfo=dt.UTC)
        try:
            price = services.model_price_set(
                provider=options["provider"],
                model=options["model"],
                input_price=input_price,
                output_price=output_price,
                effective_from=effective_from,
                source=options["source"],
            )
        except RhetorError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{price.provider}/{price.model} from {price.effective_from.isoformat()}: "
                f"${usd(price.input_price)} in, ${usd(price.output_price)} out per token."
            )
        )
        return None
