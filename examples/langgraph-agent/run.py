"""Drives the example through the published SDK (agenttier==0.8.1): create a sandbox from the
`langgraph-agent-example` template, configure it (upload the agent, run an install step, set the
entrypoint), then invoke it with a question and stream the answer.

    AGENTTIER_API_URL=http://127.0.0.1:8080/api/v1 AGENTTIER_API_KEY=... python run.py

The install step here only checks the Python version, so it works without network access; with
network (`network.allowInternet` on the template), use the pip line from requirements.txt.
"""

import os
import pathlib
import sys

from agenttier import APIKeyAuth, AgentTierClient

HERE = pathlib.Path(__file__).parent


def main():
    client = AgentTierClient(
        os.environ["AGENTTIER_API_URL"], auth=APIKeyAuth(os.environ["AGENTTIER_API_KEY"])
    )
    sandbox = client.create_sandbox("langgraph-agent-example", os.environ.get("NAME", "research"))
    sandbox.wait_until_running(timeout=60)

    result = sandbox.agent.configure(
        files=[
            ("/workspace/agent.py", HERE / "agent.py"),
            ("/workspace/requirements.txt", HERE / "requirements.txt"),
        ],
        install_command=["python3", "-c", "import sys; print('python', sys.version.split()[0])"],
        entrypoint=["python3", "/workspace/agent.py"],
        on_log=lambda stream, line: print(f"[{stream}] {line}"),
    )
    print(f"configured: hash={result.install_command_hash[:12]} skipped={result.skipped}")

    for event in sandbox.agent.invoke_stream({"question": "Which sandboxes survive a restart?"}):
        if event.event == "log":
            print(f"[{event.data['stream']}] {event.data['data']}")
        elif event.event == "exit":
            print(f"exit {event.data['exitCode']} ({event.data['reason']})")
            if event.data["exitCode"] != 0:
                sys.exit(1)
    sandbox.delete()
    print("example OK")


if __name__ == "__main__":
    main()
