"""broadcast_to_role writes one RoleBroadcast and a worker expands it into
MessageLog rows after commit: tests that read the rows right after the call
wait for that expansion first (through the real broker and worker)."""

from tests.support.processes import wait_for


def wait_expanded(timeout=60):
    """Until every RoleBroadcast has been expanded into its rows."""
    from notifications.models import RoleBroadcast

    wait_for(lambda: not RoleBroadcast.objects.filter(expanded_at__isnull=True).exists(), timeout=timeout,
             interval=0.05, message="the broadcast's expansion into MessageLog rows")
