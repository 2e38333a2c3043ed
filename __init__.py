"""FK Steering for ComfyUI: Feynman-Kac steering of diffusion sampling with any reward.

Importing this package does no network access and no heavy work; ComfyUI calls ``comfy_entrypoint()``.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension

    from .nodes import NODES

    class FKSteeringExtension(ComfyExtension):
        async def get_node_list(self):
            return list(NODES)

    return FKSteeringExtension()
