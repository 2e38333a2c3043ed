"""HPSv3 (Ma et al. 2025, MizzenAI/HPSv3): a human-preference score from Qwen2-VL-7B-Instruct with a small
regression head, loaded from the published ``HPSv3.safetensors`` through transformers' own Qwen2-VL class.

How the original scores (its ``HPSv3RewardInferencer``), reproduced here:
* the tokenizer of Qwen2-VL-7B-Instruct gains one special token ``<|Reward|>``; the model's embeddings were
  resized to the new vocabulary (the checkpoint's embedding has that many rows);
* one user turn: the image (resized to exactly 256·28·28 pixels, i.e. 256 image tokens), then the instruction
  below with the prompt filled in, then "Please provide the overall ratings of this image: <|Reward|> ... END";
* the input embeddings are built by hand (token embeddings, image features scattered over the image tokens)
  and the language model runs on them with no position ids: every token gets its sequential position, not
  the multimodal rotary positions of transformers' standard Qwen2-VL forward (``Qwen2VLRewardModelBT.forward``);
* the language model's last hidden state (after its final norm) at the ``<|Reward|>`` token goes through the
  head ``Linear(hidden, 1024) ReLU Dropout Linear(1024, 16) ReLU Linear(16, 2)`` in float32;
* the two outputs are (mu, sigma) of the preference; the score is mu.
The hidden state at ``<|Reward|>`` only depends on the tokens before it (causal attention), so the input stops
there and only that position is projected.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import qwen_vl
from .base import Reward
from .weights import BadWeightsError, load_state_dict_file

REWARD_TOKEN = "<|Reward|>"
PIXELS = 256 * 28 * 28  # HPSv3 fixes min_pixels = max_pixels = this
# The instruction HPSv3 was trained with (its data collator's INSTRUCTION), kept character for character:
# the model reads these exact tokens.
INSTRUCTION = (
    "\nYou are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a "
    "overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the worst "
    "and 10 being the best. \n\n**Visual Quality:**  \nEvaluate the overall visual quality of the image. The "
    "following sub-dimensions should be considered:\n- **Reasonableness:** The image should not contain any "
    "significant biological or logical errors, such as abnormal body structures or nonsensical environmental "
    "setups.\n- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy "
    "to interpret, with no blurring or indistinct areas.\n- **Detail Richness:** Consider the level of detail in "
    "textures, materials, lighting, and other visual elements (e.g., hair, clothing, shadows).\n- **Aesthetic and "
    "Creativity:** Assess the artistic aspects of the image, including the color scheme, composition, atmosphere, "
    "depth of field, and the overall creative appeal. The scene should convey a sense of harmony and balance.\n- "
    "**Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or "
    "adult material. If such content is present, the image quality and satisfaction score should be the lowest "
    "possible. \n\n**Text Alignment:**  \nAssess how well the image matches the textual prompt across the following "
    "sub-dimensions:\n- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, "
    "animal, object) align with the textual description. The subject should match the description in terms of "
    "number, appearance, and behavior.\n- **Style Relevance:** If the prompt specifies a particular artistic or "
    "stylistic style, evaluate how well the image adheres to this style.\n- **Contextual Consistency**: Assess "
    "whether the background, setting, and surrounding elements in the image logically fit the scenario described "
    "in the prompt. The environment should support and enhance the subject without contradictions.\n- **Attribute "
    "Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, accessories, "
    "expressions, actions) are faithfully represented in the image. Minor deviations may be acceptable, but "
    "critical attributes should be preserved.\n- **Semantic Coherence**: Evaluate whether the overall meaning and "
    "intent of the prompt are captured in the image. The generated content should not introduce elements that "
    "conflict with or distort the original description.\nTextual prompt - {text_prompt}\n\n\n"
)
RATING_REQUEST = "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"


class RankHead(nn.Module):
    """HPSv3's 'ranknet' head; layer indices match the checkpoint keys rm_head.{0,3,5}."""

    def __init__(self, hidden: int, width: int = 1024, bottleneck: int = 16, outputs: int = 2):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Dropout(0.05),
                                    nn.Linear(width, bottleneck), nn.ReLU(), nn.Linear(bottleneck, outputs))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden)


class HPSv3(Reward):
    """HPSv3's preference mean mu (unbounded; higher = preferred). The head's second output, sigma, is its
    uncertainty and is not used, as in the original inferencer."""

    name = "HPSv3"
    needs_prompt = True
    differentiable = True  # Qwen-VL's resize and patches are computed in torch (qwen_vl.image_inputs)

    def __init__(self, model, head: RankHead, tokenizer, template: str | None,
                 settings: qwen_vl.QwenImageSettings):
        super().__init__()
        self.model = model
        self.head = head
        self.tokenizer = tokenizer
        self.template = template
        self.settings = settings
        self.reward_token_id = tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
        self._ids_cache: dict[tuple[str, int], torch.Tensor] = {}
        self.freeze()

    def prompt_ids(self, prompt: str, image_tokens: int) -> torch.Tensor:
        """(1, L) ids of HPSv3's chat turn, cut right after the <|Reward|> token."""
        key = (prompt, image_tokens)
        if key not in self._ids_cache:
            text = qwen_vl.user_turn(self.tokenizer, self.template,
                                     INSTRUCTION.replace("{text_prompt}", prompt) + RATING_REQUEST)
            ids = qwen_vl.token_ids(self.tokenizer, text, image_tokens)
            positions = (ids[0] == self.reward_token_id).nonzero().flatten()
            if len(positions) != 1:
                raise BadWeightsError(f"the HPSv3 prompt holds {len(positions)} {REWARD_TOKEN} tokens, expected 1: "
                                      "does the prompt itself contain that token?")
            self._ids_cache[key] = ids[:, :int(positions[0]) + 1]
        return self._ids_cache[key]

    def _score(self, images, prompt):
        pixels, grid, image_tokens = qwen_vl.image_inputs(images, self.settings)
        ids = self.prompt_ids(prompt, image_tokens).to(images.device).expand(images.shape[0], -1)
        hidden = upstream_hidden_states(self.model, ids, pixels, grid)[:, -1]  # final-norm state at <|Reward|>
        return self.head(hidden.float())[:, 0]


def upstream_hidden_states(model, ids: torch.Tensor, pixels: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The language model's last hidden states (after its final norm) as HPSv3's own forward computes them
    (``Qwen2VLRewardModelBT.forward``): the token embeddings with the vision tower's output scattered over the
    image tokens, then the language model on ``inputs_embeds`` with no position ids, i.e. sequential positions
    for every token. That is how the checkpoint was trained and is evaluated; transformers' standard forward
    would give the image tokens multimodal rotary positions and other scores. The language model is called
    directly (not through Qwen2VLModel) so no rotary offset cached by an earlier generate call can leak in."""
    inner = model.model
    language = getattr(inner, "language_model", inner)  # transformers <= 4.51: model.model is the language model
    visual = inner.visual if hasattr(inner, "visual") else model.visual
    embeds = language.get_input_embeddings()(ids)
    image = visual(pixels.to(next(visual.parameters()).dtype), grid_thw=grid)
    image = getattr(image, "pooler_output", image)  # transformers 5 returns an output object (merged tokens)
    mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
    if int(mask[..., 0].sum()) != image.shape[0]:
        raise BadWeightsError(f"HPSv3: {image.shape[0]} image features for {int(mask[..., 0].sum())} image tokens; "
                              "the preprocessor settings do not match the vision tower")
    embeds = embeds.masked_scatter(mask, image.to(embeds.dtype))
    return language(inputs_embeds=embeds, position_ids=None, attention_mask=None, use_cache=False).last_hidden_state


# ---------------------------------------------------------------------------------------------------
# Loading
def split_checkpoint(state: dict) -> tuple[dict, dict, dict, dict]:
    """(vision, language model, lm_head, rm_head) weights, whichever Qwen2-VL key layout saved them:
    transformers <= 4.51 (``visual.*``, ``model.*``) or >= 4.52 (``model.visual.*``, ``model.language_model.*``)."""
    vision, language, lm_head, head = {}, {}, {}, {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("rm_head."):
            head[key.removeprefix("rm_head.")] = value
        elif key.startswith("lm_head."):
            lm_head[key.removeprefix("lm_head.")] = value
        elif key.startswith(("model.visual.", "visual.")):
            vision[key.split("visual.", 1)[1]] = value
        elif key.startswith("model.language_model."):
            language[key.removeprefix("model.language_model.")] = value
        elif key.startswith("model."):
            language[key.removeprefix("model.")] = value
        else:
            raise BadWeightsError(f"unexpected weight {key!r}: not an HPSv3 (Qwen2-VL reward model) checkpoint")
    if not head or not vision or "embed_tokens.weight" not in language:
        raise BadWeightsError("the checkpoint lacks the rm_head, vision or embedding weights of HPSv3")
    return vision, language, lm_head, head


def _installed_layout(model, vision: dict, language: dict, lm_head: dict) -> dict:
    """Name the weights the way the installed transformers' Qwen2VLForConditionalGeneration does."""
    names = set(model.state_dict())
    new_layout = any(name.startswith("model.language_model.") for name in names)
    vision_prefix, language_prefix = ("model.visual.", "model.language_model.") if new_layout else ("visual.", "model.")
    state = {vision_prefix + k: v for k, v in vision.items()}
    state.update({language_prefix + k: v for k, v in language.items()})
    state.update({"lm_head." + k: v for k, v in lm_head.items()})
    if "lm_head.weight" in names and "lm_head.weight" not in state and model.config.tie_word_embeddings:
        state["lm_head.weight"] = language["embed_tokens.weight"]
    return state


def load_hpsv3(checkpoint: str | Path, base_dir: str | Path, *, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> HPSv3:
    """``checkpoint``: HPSv3.safetensors; ``base_dir``: the Qwen2-VL-7B-Instruct config, tokenizer, preprocessor
    and chat-template files (no weights needed: every weight comes from the checkpoint)."""
    import transformers

    base_dir = Path(base_dir)
    if qwen_vl.read_model_type(base_dir) != "qwen2_vl":
        raise BadWeightsError(f"{base_dir / 'config.json'} is not a Qwen2-VL config; HPSv3 is built on "
                              "Qwen2-VL-7B-Instruct")
    tokenizer = qwen_vl.load_tokenizer(base_dir)
    if REWARD_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    state = load_state_dict_file(checkpoint)
    vision, language, lm_head, head_state = split_checkpoint(state)
    vocab = language["embed_tokens.weight"].shape[0]
    # HPSv3 added <|Reward|> as the last token and resized the embeddings to it: any other id reads a wrong row.
    if tokenizer.convert_tokens_to_ids(REWARD_TOKEN) != vocab - 1:
        raise BadWeightsError(f"{checkpoint} has {vocab} token embeddings, but {REWARD_TOKEN} gets id "
                              f"{tokenizer.convert_tokens_to_ids(REWARD_TOKEN)} from the tokenizer in {base_dir} "
                              f"(expected {vocab - 1}): use Qwen2-VL-7B-Instruct's own tokenizer files")
    config = transformers.AutoConfig.from_pretrained(str(base_dir), local_files_only=True)
    text_config = getattr(config, "text_config", config)
    text_config.vocab_size = vocab
    config.vocab_size = vocab
    with torch.device("meta"):  # every tensor comes from the checkpoint: skip the random init of 8 B weights
        model = transformers.Qwen2VLForConditionalGeneration._from_config(config, attn_implementation="sdpa")
    weights = _installed_layout(model, vision, language, lm_head)
    try:
        model.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines()[:2])
        raise BadWeightsError(f"{checkpoint} does not match the Qwen2-VL config in {base_dir}: {detail[:500]}") \
            from None
    buffers_from_config(model)
    hidden = text_config.hidden_size
    head = RankHead(hidden, head_state["0.weight"].shape[0], head_state["3.weight"].shape[0],
                    head_state["5.weight"].shape[0])
    try:
        head.layers.load_state_dict(head_state, strict=True)
    except RuntimeError as error:
        raise BadWeightsError(f"{checkpoint}: rm_head does not fit a {hidden}-wide model: "
                              f"{str(error).splitlines()[0]}") from None
    settings = qwen_vl.QwenImageSettings.from_folder(base_dir, min_pixels=PIXELS, max_pixels=PIXELS)
    return HPSv3(model.to(device=device, dtype=dtype).eval(), head.to(device=device),
                 tokenizer, qwen_vl.chat_template(base_dir, tokenizer), settings)


def buffers_from_config(model) -> None:
    """Non-persistent buffers (rotary inverse frequencies) are not in a checkpoint: after a meta-device build
    they are empty, so rebuild each rotary module on the CPU from the config."""
    for name, module in list(model.named_modules()):
        if "inv_freq" in dict(module.named_buffers(recurse=False)) and module.inv_freq.is_meta:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            fresh = _rebuild(module)
            setattr(parent, child, fresh)


def _rebuild(module):
    """A CPU copy of a rotary-embedding module, constructed the way its class constructs itself."""
    import inspect

    cls = type(module)
    params = inspect.signature(cls.__init__).parameters
    if "config" in params and getattr(module, "config", None) is not None:
        return cls(config=module.config)
    dim = getattr(module, "dim", None)
    theta = getattr(module, "theta", 10000.0)
    if dim is None:  # vision rotary: inv_freq has dim/2 entries
        dim = module.inv_freq.shape[0] * 2
    return cls(dim, theta) if "theta" in params else cls(dim)
