"""Engines shared by every workflow: LLM backends behind one interface with one bounded
model pool (``llm``) and sandboxes (``sandbox``). Agents, evaluation, training and serving
use them without importing each other."""
