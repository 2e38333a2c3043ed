"""ComfyUI's side of the live particle view: fk_core.live_view's events sent over ComfyUI's websocket to the
client that queued the prompt (web/fk_live.js draws them). Without a running ComfyUI server nothing is sent.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..fk_core import LiveCallbacks

Sender = Callable[[str, dict], None]


def comfy_sender() -> Optional[Sender]:
    """``PromptServer.instance.send_sync`` to the client that queued the prompt; None without a server."""
    try:
        from server import PromptServer  # ComfyUI's server module; absent outside ComfyUI
    except ImportError:
        return None
    server = getattr(PromptServer, "instance", None)
    if server is None or not hasattr(server, "send_sync"):
        return None

    def send(event: str, data: dict) -> None:
        server.send_sync(event, data, getattr(server, "client_id", None))

    return send


def live_callbacks(node_id: Any, send: Optional[Sender] = None, **reporter_options) -> LiveCallbacks:
    """The live view of sampler node ``node_id``: the observer its runs report to (``send``: ComfyUI's websocket
    unless given)."""
    return LiveCallbacks(node_id, send=send if send is not None else comfy_sender(), **reporter_options)
