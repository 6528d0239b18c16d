"""Rhetor's Python clients for other Tekton components (`rhetor.client`).

This package needs only httpx and the standard library; it never imports Django, so a
component can install it without the server.
"""
