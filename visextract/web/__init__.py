"""The review workbench: a local web app over a visextract database (`visextract serve`).

    from visextract.web.app import WebConfig, create_app, serve
    serve(WebConfig(db="sqlite:///photos.db"))      # http://127.0.0.1:8765/

Pages: the gallery `/`, a record `/record/{sha256}`, the review queue `/review`, the chat `/chat`; the same
data as JSON under `/api/`. Templates and static files ship inside this package: no CDN, no build step.
"""
