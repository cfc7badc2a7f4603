"""A test-only custom node pack: the server it is installed in answers ``GET /distorch/residency``
with garbage (an HTML error page with status 200, as a misconfigured proxy would), whatever
comfyui-distorch would have said. The routing tests install it on one worker."""
from aiohttp import web

NODE_CLASS_MAPPINGS = {}


@web.middleware
async def _garbage(request, handler):
    if request.path.rstrip("/").endswith("/distorch/residency"):
        return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
    return await handler(request)


def _register():
    import server

    server.PromptServer.instance.app.middlewares.append(_garbage)


_register()
