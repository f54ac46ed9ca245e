"""The browser foundation: server-rendered pages for the console and the shop.

What a page route needs, one module each:

- ``templating``: the Jinja2 environment and :func:`~tillpay.web.templating.render`, which
  answers a page with its own nonce-based CSP and ``Cache-Control: no-store``;
- ``assets``: the CSS and JS files, served at content-hashed URLs;
- ``csrf``: form tokens and the dependencies that verify them on every POST;
- ``session``: the console's signed ``__Host-`` cookie session, checked against the
  database on every request exactly like an access token;
- ``errors``: problem documents turned into styled HTML pages (and redirects) for
  browser paths.

docs/console.md explains the security model and how to add a page.
"""
