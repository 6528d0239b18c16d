from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "llm"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # contexts knows nothing of llm: it is handed the model that writes its summaries.
        from contexts.summaries import summary_model_set
        from llm.summaries import summary_from_model

        summary_model_set(summary_from_model)
