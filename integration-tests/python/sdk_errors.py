"""The published SDK agenttier==0.8.1 raises the contract's exceptions against our server.

Run by integration-tests/tests/auth.rs against a real `agenttier serve` that trusts a test OIDC
issuer. The test has already created the admin's sandbox "owned", minted a key scoped to it
with only the "stop" action group, and set a cluster policy allowing only the "minimal-shell"
template and at most 1 CPU. Environment:

- AGENTTIER_API_URL     the server
- AGENTTIER_ADMIN_KEY   the bootstrap admin API key
- AGENTTIER_SCOPED_KEY  the scoped key
- AGENTTIER_BOB_TOKEN   an OIDC JWT for the non-admin user "bob"
"""

import os
import sys

import agenttier
from agenttier import (
    AgentTierClient,
    APIKeyAuth,
    AuthenticationError,
    AuthorizationError,
    BearerTokenAuth,
    NotFoundError,
    PolicyViolationError,
)


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def expect(exception, action, what):
    try:
        action()
    except exception as error:
        return error
    except Exception as error:  # noqa: BLE001 - report the wrong type
        check(False, f"{what}: expected {exception.__name__}, got {type(error).__name__}: {error}")
    check(False, f"{what}: expected {exception.__name__}, nothing was raised")


def main():
    check(agenttier.__version__ == "0.8.1", f"SDK version {agenttier.__version__}")
    url = os.environ["AGENTTIER_API_URL"]
    admin = AgentTierClient(url, auth=APIKeyAuth(os.environ["AGENTTIER_ADMIN_KEY"]))
    bob = AgentTierClient(url, auth=BearerTokenAuth(os.environ["AGENTTIER_BOB_TOKEN"]))
    scoped = AgentTierClient(url, auth=APIKeyAuth(os.environ["AGENTTIER_SCOPED_KEY"]))

    # 401 -> AuthenticationError: an unknown key, a forged token.
    bogus = AgentTierClient(url, auth=APIKeyAuth("atk_" + "A" * 43))
    expect(AuthenticationError, bogus.current_user, "unknown API key")
    forged = AgentTierClient(url, auth=BearerTokenAuth("eyJhbGciOiJub25lIn0.e30."))
    error = expect(AuthenticationError, forged.current_user, "alg none token")
    check("invalid_token" in str(error), f"401 message: {error}")

    # An OIDC user works through the SDK, with groups as a list.
    me = bob.current_user()
    check(me.sub == "bob" and me.groups == ["dev"] and not me.is_admin, f"bob: {me!r}")

    # 403 policy_violation -> PolicyViolationError with the violations list.
    error = expect(
        PolicyViolationError,
        lambda: admin.create_sandbox("general-coding", "denied"),
        "policy violation",
    )
    codes = sorted(v["code"] for v in error.violations)
    check(codes == ["cpu_limit_exceeded", "template_not_allowed"], f"violations: {error.violations}")
    check(all(v.get("message") and v.get("field") for v in error.violations), "messages and fields")
    check(str(error) == "policy_violation", f"message: {error}")
    check(isinstance(error, agenttier.AgentTierError), "PolicyViolationError is an AgentTierError")

    # 404 -> NotFoundError: someone else's sandbox, and a missing one.
    error = expect(NotFoundError, lambda: bob.get_sandbox("owned"), "another user's sandbox")
    check("access denied to sandbox owned" in str(error), f"404 message: {error}")
    expect(NotFoundError, lambda: admin.get_sandbox("missing"), "missing sandbox")
    check([s.name for s in bob.list_sandboxes()] == [], "bob lists none of the admin's sandboxes")

    # Other 403 -> AuthorizationError: a scoped key outside its action groups.
    error = expect(AuthorizationError, lambda: scoped.get_sandbox("owned"), "scoped key on GET")
    check("scoped key not permitted for this route" in str(error), f"403 message: {error}")
    expect(AuthorizationError, scoped.list_sandboxes, "scoped key on list")

    # A user sandbox within the policy is still created.
    sandbox = bob.create_sandbox("minimal-shell", "bobs")
    sandbox.wait_until_running(timeout=30, poll_interval=0.2)
    sandbox.terminate()
    for client in (admin, bob, scoped):
        client.close()
    print("SDK errors OK")


if __name__ == "__main__":
    main()
