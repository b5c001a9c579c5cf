"""Agent mode through the published Python SDK agenttier==0.8.1, unchanged: configure streams
its log and result, an identical configure is skipped, invoke streams stdout, stderr and the
exit, a timeout ends with reason `timeout`, a cancel with `canceled`, and a third concurrent
invoke over the langgraph-agent template's limit of 2 gets 429.

Run by integration-tests/tests/sdk.rs against a real `agenttier serve`, and by kube_agent.rs
against one on Kubernetes; reads AGENTTIER_API_URL and AGENTTIER_API_KEY like any SDK user
would. On Kubernetes AGENTTIER_TEST_TEMPLATE and AGENTTIER_TEST_NAMESPACE name the test's own
agent template and namespace (defaults: langgraph-agent in default).
"""

import asyncio
import os
import sys
import threading

from agenttier import APIError, APIKeyAuth, AgentTierClient, AsyncAgentTierClient

AGENT = """#!/bin/sh
# A stand-in agent: echoes its prompt argument and stdin, or sleeps when asked.
for arg in "$@"; do
  case "$arg" in
    --prompt=sleep) sleep 30; exit 0 ;;
  esac
done
payload=$(cat)
echo "args: $*"
echo "payload: $payload"
echo "working on it" >&2
printf 'no newline at the end'
exit 4
"""


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def configure(sb):
    logs = []
    result = sb.agent.configure(
        files=[
            {"path": "/workspace/agent.sh", "content": AGENT},
            ("/workspace/data.bin", b"\x00\x01\xff"),
        ],
        install_command=["sh", "-c", "echo installing deps; echo a warning >&2"],
        entrypoint=["sh", "/workspace/agent.sh"],
        on_log=lambda stream, line: logs.append((stream, line)),
    )
    check(not result.skipped and result.install_exit_code == 0, f"configure: {result!r}")
    check(result.entrypoint == ["sh", "/workspace/agent.sh"], f"entrypoint: {result!r}")
    check(len(result.install_command_hash) == 64, f"hash: {result!r}")
    expected = [
        ("stdout", "[configure] uploading /workspace/agent.sh"),
        ("stdout", "[configure] uploading /workspace/data.bin"),
        ("stdout", "[configure] running install: sh -c echo installing deps; echo a warning >&2"),
    ]
    check(logs[:3] == expected, f"configure progress: {logs!r}")
    check(("stdout", "installing deps") in logs, f"install stdout: {logs!r}")
    check(("stderr", "a warning") in logs, f"install stderr: {logs!r}")
    data = sb.exec("od -An -tx1 /workspace/data.bin").stdout.split()
    check(data == ["00", "01", "ff"], f"binary file written: {data!r}")

    again = []
    second = sb.agent.configure(
        files=[
            {"path": "/workspace/agent.sh", "content": AGENT},
            ("/workspace/data.bin", b"\x00\x01\xff"),
        ],
        install_command=["sh", "-c", "echo installing deps; echo a warning >&2"],
        entrypoint=["sh", "/workspace/agent.sh"],
        on_log=lambda stream, line: again.append((stream, line)),
    )
    check(second.skipped, f"an identical configure is skipped: {second!r}")
    check(second.install_command_hash == result.install_command_hash, "same hash")
    check(again == [], f"a skipped configure writes and runs nothing: {again!r}")


def invoke(sb):
    result = sb.agent.invoke({"task": "sum"}, prompt="hello world")
    check(result.reason == "completed" and result.exit_code == 4, f"invoke: {result!r}")
    check(result.invoke_id.startswith("inv-"), f"invoke id: {result!r}")
    check(
        result.stdout
        == 'args: --prompt=hello world\npayload: {"task": "sum"}\nno newline at the end',
        f"invoke stdout: {result.stdout!r}",
    )
    check(result.stderr == "working on it", f"invoke stderr: {result.stderr!r}")

    events = list(sb.agent.invoke_stream(prompt="streamed"))
    names = [e.event for e in events]
    check(names[0] == "start" and names[-1] == "exit", f"stream events: {names!r}")
    check(
        {"stream": "stdout", "data": "payload: streamed"} in [e.data for e in events],
        f"the prompt is stdin when there is no payload: {events!r}",
    )

    timed_out = sb.agent.invoke(prompt="sleep", invoke_timeout="1s")
    check(timed_out.reason == "timeout" and timed_out.exit_code == -1, f"timeout: {timed_out!r}")


def cancel_and_limit(sb):
    stream = sb.agent.invoke_stream(prompt="sleep")
    start = next(stream)
    check(start.event == "start", f"first event: {start!r}")
    invoke_id = start.data["invokeId"]

    # A second long invoke keeps the sandbox at its limit of 2; a third is refused.
    second = sb.agent.invoke_stream(prompt="sleep")
    check(next(second).event == "start", "second invoke started")
    try:
        sb.agent.invoke(prompt="third")
        check(False, "a third concurrent invoke must get 429")
    except APIError as e:
        check(e.status_code == 429, f"over the limit: {e!r}")

    sb.agent.invoke_cancel(invoke_id)
    rest = list(stream)
    check(rest and rest[-1].event == "exit", f"cancelled stream ends with exit: {rest!r}")
    check(rest[-1].data["reason"] == "canceled", f"cancel reason: {rest[-1].data!r}")
    # Closing a stream early is a cancel too: the place is freed.
    second.close()
    done = None
    for _ in range(50):
        try:
            done = sb.agent.invoke(prompt="after")
            break
        except APIError as e:
            check(e.status_code == 429, f"only 429 while the close is noticed: {e!r}")
            threading.Event().wait(0.1)
    check(done is not None and done.reason == "completed", f"after the cancels: {done!r}")


async def async_agent(url, key):
    async with AsyncAgentTierClient(url, auth=APIKeyAuth(key)) as client:
        sb = await client.get_sandbox("sdk-agent")
        result = await sb.agent.invoke("from async")
        check(result.stdout.startswith("args: \npayload: from async"), f"async: {result!r}")


def main():
    url = os.environ["AGENTTIER_API_URL"]
    key = os.environ["AGENTTIER_API_KEY"]
    client = AgentTierClient(url, auth=APIKeyAuth(key))
    template = os.environ.get("AGENTTIER_TEST_TEMPLATE", "langgraph-agent")
    namespace = os.environ.get("AGENTTIER_TEST_NAMESPACE", "default")
    sb = client.create_sandbox(template, "sdk-agent", namespace=namespace)
    sb.wait_until_running(timeout=30, poll_interval=0.2)
    configure(sb)
    invoke(sb)
    cancel_and_limit(sb)
    asyncio.run(async_agent(url, key))
    sb.delete()
    print("SDK agent mode OK")


if __name__ == "__main__":
    main()
