"""Who may call what: API keys and the access guard."""
