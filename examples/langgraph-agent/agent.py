"""A LangGraph-style agent in plain Python: a small state graph (plan -> act -> respond) over
the request it reads from stdin. It runs without network access or extra packages, so the
example works in any sandbox; with `langgraph` installed (see requirements.txt and the
installCommand in run.py), the same three nodes become a `StateGraph`.

Input: a JSON object on stdin (`{"question": ...}`) and/or `--prompt=<text>` in argv.
Output: progress on stderr, the answer on stdout, exit code 0.
"""

import json
import os
import sys


def plan(state):
    words = state["question"].split()
    state["steps"] = [f"look up {w.strip('?.,')}" for w in words if len(w) > 4][:3]
    print(f"plan: {len(state['steps'])} steps", file=sys.stderr, flush=True)
    return state


def act(state):
    prompt_file = "/workspace/.agenttier/system-prompt.md"
    state["persona"] = open(prompt_file).read().strip() if os.path.exists(prompt_file) else ""
    for step in state["steps"]:
        print(f"act: {step}", file=sys.stderr, flush=True)
    return state


def respond(state):
    state["answer"] = f"Answer to {state['question']!r} after {len(state['steps'])} steps."
    return state


GRAPH = [plan, act, respond]


def main():
    raw = sys.stdin.read()
    try:
        request = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        request = {"question": raw}
    prompt = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--prompt=")), None)
    state = {"question": request.get("question") or prompt or ""}
    for node in GRAPH:
        state = node(state)
    with open("/workspace/notes/log.txt", "a") as log:
        log.write(f"answered: {state['question']}\n")
    print(json.dumps({"answer": state["answer"], "persona": bool(state["persona"])}))


if __name__ == "__main__":
    main()
