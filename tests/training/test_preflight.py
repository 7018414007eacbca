import pytest

from omnifuse.training.preflight import check_component_configs
from omnifuse.training.recipe import ModelSection, RecipeError

TEXT = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 300}  # fmt: skip


def test_parameters_are_counted_on_the_meta_device():
    count = check_component_configs(ModelSection(text=TEXT))
    assert 300 * 32 * 2 < count < 100_000  # embeddings + head + one small layer


def test_a_model_bigger_than_memory_is_refused():
    with pytest.raises(RecipeError, match="more than this machine's 0.0 GiB"):
        check_component_configs(ModelSection(text=TEXT), memory_bytes=1000)


def test_a_config_that_cannot_build_names_its_component():
    image = {"model_type": "siglip_vision_model", "hidden_size": 30, "num_attention_heads": 4}
    with pytest.raises(RecipeError, match=r"^model.image: this config cannot build a model"):
        check_component_configs(ModelSection(text=TEXT, image=image))
