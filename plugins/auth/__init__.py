"""Built-in login providers: local accounts, LDAP and OpenID Connect."""
