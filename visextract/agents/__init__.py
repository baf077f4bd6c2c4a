"""LangGraph graphs: the per-image extraction graph and the query (chat) agent."""
