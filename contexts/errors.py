from rhetor_site.errors import NotFound, RhetorError

CONTEXT_NOT_FOUND = "Context {context_id!r} does not exist"


class ContextNotFound(NotFound):
    code = "context_not_found"


SEARCH_QUERY_REQUIRED = 'A search query is required (?query=… or a JSON body {"query": …})'

CONTEXT_EXISTS = "Context {context_id!r} already exists"


class ContextAlreadyExists(RhetorError):
    status = 409
    code = "context_exists"
