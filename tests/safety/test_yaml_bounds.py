import pytest
import yaml

from omnifuse.safety.limits import InputLimitError
from omnifuse.safety.yaml_bounds import expanded_size, load_yaml_bounded, read_text_bounded


def test_expanded_size_counts_aliases_each_time_they_are_used():
    node = yaml.compose("a: &x [1, 2, 3]\nb: [*x, *x]\n", Loader=yaml.SafeLoader)
    # mapping 1 + keys 2 + list a (4) + list b (1 + 2 * 4)
    assert expanded_size(node, {}) == 1 + 2 + 4 + 9


def test_small_documents_load_like_safe_load():
    text = "model: {text: /models/x}\nstages:\n  - {name: sft, lr: 1e-3}\n"
    assert load_yaml_bounded(text, "r.yaml") == yaml.safe_load(text)
    assert load_yaml_bounded("", "r.yaml") is None


def test_node_limit_is_a_parameter():
    with pytest.raises(InputLimitError, match="expands to 11 values"):
        load_yaml_bounded("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", "r.yaml", max_nodes=10)


def test_yaml_syntax_errors_stay_yaml_errors():
    with pytest.raises(yaml.YAMLError):
        load_yaml_bounded("a: [1, 2", "r.yaml")


def test_python_tags_are_refused_by_the_safe_loader():
    with pytest.raises(yaml.YAMLError):
        load_yaml_bounded("!!python/object/apply:os.system ['true']", "r.yaml")


def test_read_text_bounded(tmp_path):
    (tmp_path / "ok.yaml").write_bytes(b"\xef\xbb\xbfa: 1\n")  # a BOM is fine
    assert read_text_bounded(tmp_path / "ok.yaml", "ok.yaml") == "a: 1\n"
    (tmp_path / "big.yaml").write_bytes(b"a" * 101)
    with pytest.raises(InputLimitError, match="over 100 bytes"):
        read_text_bounded(tmp_path / "big.yaml", "big.yaml", max_bytes=100)
