"""Checks: fact finders (spf, dkim, dmarc, dcc, scan, ratelimit, proxy) returning typed results."""
