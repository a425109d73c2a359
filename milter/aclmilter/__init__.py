"""aclmilter: one milter for Postfix and Sendmail driven by a YAML policy with Exim ACL semantics."""

__version__ = "0.1.0"
