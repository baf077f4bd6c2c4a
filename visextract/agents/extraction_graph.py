"""The extraction graph, per image. This file is the pipeline's table of contents.

load -> plan -> tools -> llm ------> validate -> verify -> persist
  |               |       |              |       (LLM fields vs tool evidence)
  |               |       +-> assemble --+-> llm (re-ask with the errors, bounded)
  |               |          (no LLM, or no LLM answer)
  |               +-> persist (a tool failed)
  +-> end (already done) | persist (unreadable)
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from visextract.agents.extraction_nodes import (
    after_llm,
    after_load,
    after_plan,
    after_tools,
    after_validate,
    ask_llm,
    assemble,
    load,
    persist,
    plan,
    run_tools,
    validate,
    verify,
)
from visextract.agents.extraction_state import ExtractionContext, ImageState


def build_extraction_graph() -> CompiledStateGraph:
    graph = StateGraph(ImageState, context_schema=ExtractionContext)
    graph.add_node("load", load)
    graph.add_node("plan", plan)
    graph.add_node("tools", run_tools)
    graph.add_node("llm", ask_llm)
    graph.add_node("assemble", assemble)
    graph.add_node("validate", validate)
    graph.add_node("verify", verify)
    graph.add_node("persist", persist)

    graph.add_edge(START, "load")
    graph.add_conditional_edges("load", after_load, ["plan", "persist", END])
    graph.add_conditional_edges("plan", after_plan, ["tools", END])
    graph.add_conditional_edges("tools", after_tools, ["llm", "assemble", "persist", END])
    graph.add_conditional_edges("llm", after_llm, ["validate", "assemble"])
    graph.add_edge("assemble", "validate")
    graph.add_conditional_edges("validate", after_validate, ["llm", "verify", "persist"])
    graph.add_edge("verify", "persist")
    graph.add_edge("persist", END)
    return graph.compile()
