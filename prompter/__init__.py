"""The souffleur: agent-assist rules, knowledge base, hint delivery."""
