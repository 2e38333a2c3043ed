"""fk_core.rewards.loader_settings: what a reward loader's inputs mean on any host."""

from fk_core import (
    AUTO_WEIGHTS,
    SETTING_DEFAULTS,
    SETTING_HELP,
    SETTING_NAMES,
    SPECS,
    unknown_input_problem,
    with_defaults,
)


def test_every_setting_a_reward_reads_has_a_default_and_help():
    read = {setting for spec in SPECS.values() for setting in spec.settings}
    assert read <= set(SETTING_NAMES) == set(SETTING_DEFAULTS) == set(SETTING_HELP)


def test_left_out_or_empty_settings_take_their_defaults():
    values = with_defaults({"reward": "brightness", "target": None, "color": "#000000", "weights": AUTO_WEIGHTS})
    assert values["target"] == SETTING_DEFAULTS["target"] and values["color"] == "#000000"
    assert values["question"] == SETTING_DEFAULTS["question"] and values["reward"] == "brightness"


def test_an_input_the_loader_has_under_no_name_is_named():
    assert unknown_input_problem("FK Reward Loader", {"reward": "VLM judge", "question": "?"}) is None
    problem = unknown_input_problem("FK Reward Loader", {"reward": "VLM judge", "questoin": "?"})
    assert problem.startswith("FK Reward Loader: questoin is not an input") and "question" in problem
