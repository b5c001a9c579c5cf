"""The core life cycle through the published Python SDK agenttier==0.8.1, unchanged.

Run by integration-tests/tests/sdk.rs against a real `agenttier serve`; reads
AGENTTIER_API_URL and AGENTTIER_API_KEY like any SDK user would.
"""

import asyncio
import os
import sys

import agenttier
from agenttier import (
    APIKeyAuth,
    AgentTierClient,
    AsyncAgentTierClient,
    ConflictError,
    NotFoundError,
    SandboxPhase,
)


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def sync_life_cycle(url, key):
    client = AgentTierClient(url, auth=APIKeyAuth(key))
    me = client.current_user()
    check(me.groups == [] and me.is_admin, f"current_user: {me!r}")
    names = [t.name for t in client.list_templates()]
    check("minimal-shell" in names and "general-coding" in names, f"templates: {names}")
    check(client.get_template("general-coding").spec is not None, "get_template has a spec")

    sb = client.create_sandbox("minimal-shell", "sdk-life")
    summary = sb.wait_until_running(timeout=30, poll_interval=0.2)
    check(summary.phase is SandboxPhase.RUNNING, f"running: {summary!r}")
    result = sb.exec("echo hello > /workspace/f && cat /workspace/f")
    check((result.stdout, result.exit_code) == ("hello\n", 0), f"exec: {result!r}")
    failed = sb.exec("echo oops >&2; exit 7")
    check((failed.stderr, failed.exit_code) == ("oops\n", 7), f"exec failure: {failed!r}")

    sb.stop()
    check(sb.phase is SandboxPhase.STOPPED, f"stopped: {sb.phase}")
    try:
        sb.stop()
        check(False, "stopping a stopped sandbox must raise ConflictError")
    except ConflictError:
        pass
    sb.resume()
    sb.wait_until_running(timeout=30, poll_interval=0.2)
    check(sb.exec("cat /workspace/f").stdout == "hello\n", "file survived stop/resume")

    clone = sb.clone(name="sdk-clone")
    check(clone.name == "sdk-clone" and clone.namespace == "default", f"clone: {clone.id}")
    clone.wait_until_running(timeout=30, poll_interval=0.2)
    check(clone.exec("cat /workspace/f").stdout == "hello\n", "clone sees the file")

    listed = sorted(s.name for s in client.list_sandboxes())
    check(listed == ["sdk-clone", "sdk-life"], f"list: {listed}")
    running = [s.name for s in client.list_sandboxes(status="Running")]
    check(sorted(running) == ["sdk-clone", "sdk-life"], f"list by status: {running}")
    again = client.get_sandbox("sdk-life")
    check(again.status().sandbox_id == "sdk-life", "get_sandbox")

    try:
        client.create_sandbox("minimal-shell", "sdk-life")
        check(False, "a duplicate name must raise ConflictError")
    except ConflictError:
        pass

    sb.terminate()
    clone.delete()
    for name in ("sdk-life", "sdk-clone"):
        try:
            client.get_sandbox(name).status()
            check(False, f"{name} must be gone")
        except NotFoundError:
            pass
    check(client.list_sandboxes() == [], "no sandboxes left")
    client.close()


async def async_life_cycle(url, key):
    async with AsyncAgentTierClient(url, auth=APIKeyAuth(key)) as client:
        sb = await client.create_sandbox("minimal-shell", "sdk-async")
        await sb.wait_until_running(timeout=30, poll_interval=0.2)
        result = await sb.exec("uname -s")
        check(result.stdout == "Linux\n", f"async exec: {result!r}")
        await sb.terminate()


def main():
    check(agenttier.__version__ == "0.8.1", f"SDK version {agenttier.__version__}")
    url, key = os.environ["AGENTTIER_API_URL"], os.environ["AGENTTIER_API_KEY"]
    sync_life_cycle(url, key)
    asyncio.run(async_life_cycle(url, key))
    print("SDK life cycle OK")


if __name__ == "__main__":
    main()
