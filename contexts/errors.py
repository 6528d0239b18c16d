from rhetor_site.errors import NotFound

CONTEXT_NOT_FOUND = "Context {context_id!r} does not exist"


class ContextNotFound(NotFound):
    code = "context_not_found"


SEARCH_QUERY_REQUIRED = 'A search query is required (?query=… or a JSON body {"query": …})'
