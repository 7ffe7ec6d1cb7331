"""Marketing e-mail consent: opt-in, one-click unsubscribe, marketing messages."""
