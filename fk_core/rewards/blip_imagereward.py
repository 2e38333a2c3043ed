"""ImageReward v1.0 network (Xu et al. 2023) written on plain torch modules.

Architecture: BLIP ViT (ViT-L/16 at 224 px in the published model) -> BERT text encoder whose every layer
cross-attends to the image tokens ("med" encoder) -> MLP head on the [CLS] state, standardised with the
published mean/std. Parameter names mirror the original package so ``ImageReward.pt`` loads directly, but
nothing here imports that package or patches transformers, so it runs on any transformers version.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .weights import BadWeightsError

# Published standardisation of the raw MLP output (ImageReward.py, v1.0 checkpoint).
IMAGEREWARD_MEAN = 0.16717362830052426
IMAGEREWARD_STD = 1.0333394966054072
# ImageReward tokenises every prompt to exactly this many tokens.
PROMPT_TOKENS = 35
# The original med.py uses -10000 for masked keys; it also stays finite in fp16.
_MASKED = -10000.0


@dataclass
class VisionConfig:
    image_size: int = 224
    patch_size: int = 16
    width: int = 1024
    depth: int = 24
    heads: int = 16
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-6


@dataclass
class TextConfig:
    vocab_size: int = 30524
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    encoder_width: int = 1024

    @classmethod
    def from_med_config(cls, config: dict, encoder_width: int) -> TextConfig:
        act = config.get("hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(f"med_config hidden_act {act!r} is not supported (ImageReward uses 'gelu')")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("med_config position_embedding_type must be 'absolute' (as in ImageReward)")
        fields = {name: config[name] for name in cls.__dataclass_fields__ if name in config}
        # BLIP overrides encoder_width with the vision width, whatever the json says.
        fields["encoder_width"] = encoder_width
        return cls(**fields)


def _attention(query, key, value, heads: int, mask=None):
    """Multi-head scaled dot-product attention on (B, L, D) projections."""
    batch, q_len, dim = query.shape
    k_len = key.shape[1]
    head_dim = dim // heads
    q = query.view(batch, q_len, heads, head_dim).transpose(1, 2)
    k = key.view(batch, k_len, heads, head_dim).transpose(1, 2)
    v = value.view(batch, k_len, heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).reshape(batch, q_len, dim)


# ---------------------------------------------------------------------------------------------------
# Vision transformer (BLIP / timm ViT layout: pre-norm blocks, fused qkv, final LayerNorm).
class _PatchEmbed(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class _VitAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, cfg.width * 3, bias=True)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(_attention(q, k, v, self.heads))


class _VitMlp(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        hidden = int(cfg.width * cfg.mlp_ratio)
        self.fc1 = nn.Linear(cfg.width, hidden)
        self.fc2 = nn.Linear(hidden, cfg.width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _VitBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = _VitAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = _VitMlp(cfg)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class BlipVisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.config = cfg
        num_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.patch_embed = _PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, cfg.width))
        self.blocks = nn.ModuleList([_VitBlock(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)

    def forward(self, pixels):
        x = self.patch_embed(pixels)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = x + self.pos_embed[:, :x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


# ---------------------------------------------------------------------------------------------------
# BERT encoder with cross-attention in every layer (BLIP "med" layout, post-norm residuals).
class _BertEmbeddings(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        return self.LayerNorm(x)


class _BertSelfAttention(nn.Module):
    def __init__(self, cfg: TextConfig, cross: bool):
        super().__init__()
        self.heads = cfg.num_attention_heads
        kv_width = cfg.encoder_width if cross else cfg.hidden_size
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(kv_width, cfg.hidden_size)
        self.value = nn.Linear(kv_width, cfg.hidden_size)

    def forward(self, hidden, context, mask):
        return _attention(self.query(hidden), self.key(context), self.value(context), self.heads, mask)


class _BertResidualOutput(nn.Module):
    def __init__(self, in_width: int, cfg: TextConfig):
        super().__init__()
        self.dense = nn.Linear(in_width, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dense(hidden) + residual)


class _BertAttention(nn.Module):
    def __init__(self, cfg: TextConfig, cross: bool):
        super().__init__()
        self.self = _BertSelfAttention(cfg, cross)
        self.output = _BertResidualOutput(cfg.hidden_size, cfg)

    def forward(self, hidden, context, mask):
        return self.output(self.self(hidden, context, mask), hidden)


class _BertIntermediate(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, hidden):
        return F.gelu(self.dense(hidden))


class _BertLayer(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.attention = _BertAttention(cfg, cross=False)
        self.crossattention = _BertAttention(cfg, cross=True)
        self.intermediate = _BertIntermediate(cfg)
        self.output = _BertResidualOutput(cfg.intermediate_size, cfg)

    def forward(self, hidden, text_mask, image_tokens):
        hidden = self.attention(hidden, hidden, text_mask)
        # Every image token is valid, so cross-attention needs no mask.
        hidden = self.crossattention(hidden, image_tokens, None)
        return self.output(self.intermediate(hidden), hidden)


class _BertEncoder(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.layer = nn.ModuleList([_BertLayer(cfg) for _ in range(cfg.num_hidden_layers)])


class MedTextEncoder(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = _BertEmbeddings(cfg)
        self.encoder = _BertEncoder(cfg)

    def forward(self, input_ids, attention_mask, image_tokens):
        hidden = self.embeddings(input_ids)
        additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * _MASKED
        for layer in self.encoder.layer:
            hidden = layer(hidden, additive, image_tokens)
        return hidden


class _Blip(nn.Module):
    """Container named like BLIP_Pretrain so checkpoint keys match (``blip.visual_encoder...``)."""

    def __init__(self, vision: VisionConfig, text: TextConfig):
        super().__init__()
        self.visual_encoder = BlipVisionTransformer(vision)
        self.text_encoder = MedTextEncoder(text)


class ScoreHead(nn.Module):
    """The five-layer linear MLP (no activations; dropout slots kept for the key names) that both ImageReward
    and the LAION improved-aesthetic-predictor put on top of an embedding to produce one score."""

    def __init__(self, width: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x):
        return self.layers(x)


class ImageRewardNet(nn.Module):
    """pixels (already resized + CLIP-normalised) + token ids -> standardised ImageReward score (B,)."""

    def __init__(self, vision: VisionConfig, text: TextConfig):
        super().__init__()
        self.blip = _Blip(vision, text)
        self.mlp = ScoreHead(text.hidden_size)

    def forward(self, pixels, input_ids, attention_mask):
        image_tokens = self.blip.visual_encoder(pixels)
        text_states = self.blip.text_encoder(input_ids, attention_mask, image_tokens)
        raw = self.mlp(text_states[:, 0]).squeeze(-1)
        return (raw - IMAGEREWARD_MEAN) / IMAGEREWARD_STD


# Keys in ImageReward.pt that the scoring path does not use (BLIP's contrastive projections and the
# position-id buffer that old transformers versions saved).
UNUSED_CHECKPOINT_KEYS = (
    "blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight", "blip.text_proj.bias",
    "blip.text_encoder.embeddings.position_ids",
)


def vision_config_from_state_dict(state_dict: dict) -> VisionConfig:
    """Read the ViT geometry from checkpoint shapes (so tiny test checkpoints load the same way)."""
    prefix = "blip.visual_encoder."
    try:
        patch_weight = state_dict[prefix + "patch_embed.proj.weight"]
        pos_embed = state_dict[prefix + "pos_embed"]
    except KeyError as missing:
        raise BadWeightsError(f"not an ImageReward checkpoint: key {missing.args[0]!r} is missing") from None
    width, _, patch, _ = patch_weight.shape
    grid = round((pos_embed.shape[1] - 1) ** 0.5)
    depth = 1 + max(int(k[len(prefix) + len("blocks."):].split(".")[0])
                    for k in state_dict if k.startswith(prefix + "blocks."))
    hidden = state_dict[prefix + "blocks.0.mlp.fc1.weight"].shape[0]
    # Heads cannot be read from shapes; BLIP uses 64-wide heads for both its base and large ViTs.
    return VisionConfig(image_size=grid * patch, patch_size=patch, width=width, depth=depth,
                        heads=max(1, width // 64), mlp_ratio=hidden / width)
