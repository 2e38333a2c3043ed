"""A local vision-language judge, VQAScore-style (Lin et al. 2024): the probability that a Qwen-VL instruct model
answers "Yes" to "Does this image show: {prompt}?".

One forward pass per batch: every image gets the same size, so the question has the same token ids for every
image and the answer's probability is read off the logits by teacher forcing (no generation, no sampling).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from . import qwen_vl
from .base import Reward, RewardInputError
from .weights import BadWeightsError

DEFAULT_QUESTION = "Does this image show: {prompt}? Answer yes or no."
DEFAULT_ANSWER = "Yes"
# Pixels per image the judge looks at: about 630 x 630 (512 image tokens), enough for objects and counts
# at a fraction of the cost of the model's own maximum (over 16 000 tokens).
DEFAULT_MAX_PIXELS = 512 * 28 * 28


def check_question(question: str) -> str:
    if not isinstance(question, str) or "{prompt}" not in question:
        raise RewardInputError(f"the VLM judge's question must contain {{prompt}} where the prompt goes, got "
                               f"{question!r}; e.g. {DEFAULT_QUESTION!r}")
    return question


class VQAJudge(Reward):
    """P(answer | image, question): a score in [0, 1], higher = the model is surer the image shows the prompt."""

    needs_prompt = True
    differentiable = True  # teacher-forced answer probability: torch from the pixels to the logits

    def __init__(self, model, tokenizer, template: str | None, settings: qwen_vl.QwenImageSettings,
                 question: str = DEFAULT_QUESTION, answer: str = DEFAULT_ANSWER, name: str = "VLM judge"):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.settings = settings
        self.question = check_question(question)
        self.answer_ids = tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        if self.answer_ids.numel() == 0:
            raise RewardInputError(f"the VLM judge's answer {answer!r} is empty after tokenisation")
        self.name = name
        self._accepted = qwen_vl.forward_kwargs(model)
        self._ids_cache: dict[tuple[str, int], torch.Tensor] = {}
        self.freeze()

    def asking(self, question: str) -> VQAJudge:
        """The same judge (same weights, no copy) with another question template."""
        if question == self.question:
            return self
        view = copy.copy(self)  # shares the submodules; only the question and the token cache are its own
        view.question = check_question(question)
        view._ids_cache = {}
        return view

    def prompt_ids(self, prompt: str, image_tokens: int) -> torch.Tensor:
        """(1, L) ids of chat turn + answer minus its last token: the logits at the last len(answer) positions
        then predict the answer's tokens."""
        key = (prompt, image_tokens)
        if key not in self._ids_cache:
            text = qwen_vl.user_turn(self.tokenizer, self.template, self.question.replace("{prompt}", prompt))
            ids = qwen_vl.token_ids(self.tokenizer, text, image_tokens)
            self._ids_cache[key] = torch.cat([ids, self.answer_ids[None, :-1]], dim=1)
        return self._ids_cache[key]

    def log_probability(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        pixels, grid, image_tokens = qwen_vl.image_inputs(images, self.settings)
        ids = self.prompt_ids(prompt, image_tokens).to(images.device).expand(images.shape[0], -1)
        answer = len(self.answer_ids)
        inputs = qwen_vl.model_inputs(self.model, ids, pixels, grid, self._accepted)
        if "logits_to_keep" in self._accepted:  # project only the answer positions onto the vocabulary
            inputs["logits_to_keep"] = answer
        logits = self.model(**inputs).logits[:, -answer:]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        targets = self.answer_ids.to(images.device)[None, :, None].expand(images.shape[0], -1, 1)
        return log_probs.gather(-1, targets)[..., 0].sum(dim=1)

    def _score(self, images, prompt):
        return self.log_probability(images, prompt).exp()


def from_pretrained_kwargs(dtype: torch.dtype) -> dict:
    """transformers >= 4.56 names the dtype argument `dtype` (5 drops `torch_dtype`)."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def load_vqa_judge(model_dir: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                   question: str = DEFAULT_QUESTION, answer: str = DEFAULT_ANSWER,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> VQAJudge:
    """A Qwen2-VL / Qwen2.5-VL / Qwen3-VL instruct model saved as a transformers folder (config.json, safetensors
    shards, tokenizer and preprocessor files), e.g. a download of Qwen/Qwen2.5-VL-3B-Instruct."""
    model_dir = Path(model_dir)
    check_question(question)
    cls = qwen_vl.model_class(qwen_vl.read_model_type(model_dir), model_dir)
    settings = qwen_vl.QwenImageSettings.from_folder(model_dir)
    settings = qwen_vl.QwenImageSettings(**{**settings.__dict__, "max_pixels": min(settings.max_pixels, max_pixels),
                                            "min_pixels": min(settings.min_pixels, max_pixels)})
    tokenizer = qwen_vl.load_tokenizer(model_dir)
    template = qwen_vl.chat_template(model_dir, tokenizer)
    try:
        model = cls.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="sdpa",
                                    **from_pretrained_kwargs(dtype))
    except (OSError, ValueError, RuntimeError) as error:
        raise BadWeightsError(f"{model_dir} does not hold loadable {cls.__name__} weights: "
                              f"{str(error).splitlines()[0]}") from None
    return VQAJudge(model.to(device=device).eval(), tokenizer, template, settings, question, answer,
                    name=f"VLM judge ({model_dir.name})")
