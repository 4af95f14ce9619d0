"""``demoai model``: import (stat-cached, no bytes stored twice), list/show with header facts,
lineage and evals, aliases as refs with their history, rm, export loaded by upstream tools
(llama-cpp-python, peft) and merge."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from demoai.cli import main
from demoai.porcelain import init
from demoai.porcelain import model as M
from demoai.registry.defaults import default_gguf_path


@pytest.fixture()
def repo(tmp_path):
    r = init(tmp_path / "r")
    yield r
    r.close()


def test_import_gguf_twice_reads_nothing_and_lists(repo):
    g = default_gguf_path()
    first = M.import_model(repo, g, dest="models/smol.gguf")
    assert first.commit and first.bytes_read == g.stat().st_size and first.new_bytes > 0
    again = M.import_model(repo, g, dest="models/smol.gguf")
    assert again.commit is None and again.bytes_read == 0 and again.new_bytes == 0
    other = M.import_model(repo, g, dest="models/copy.gguf")
    assert other.commit and other.new_bytes == 0 and other.digest == first.digest
    rows = {r.path: r for r in M.list_models(repo)}
    e = rows["models/smol.gguf"]
    assert (e.kind, e.format, e.quantization, e.architecture) == ("model", "gguf", "Q4_1", "llama")
    import gguf
    assert e.parameters == sum(int(t.n_elements) for t in gguf.GGUFReader(str(g)).tensors)
    info = M.show_model(repo, "smol")
    assert info.meta["config"]["block_count"] == 30 and info.meta["chat_template_digest"].startswith("blake3:")
    assert info.lineage["commit"] == first.commit


def test_aliases_are_refs_with_history_and_rm(repo):
    g = default_gguf_path()
    M.import_model(repo, g, dest="models/a.gguf")
    M.import_model(repo, g, dest="models/b.gguf")
    M.set_alias(repo, "models/a.gguf", "champion")
    M.set_alias(repo, "b", "champion")
    assert repo.ref_value("refs/aliases/champion")
    hist = M.alias_history(repo, "champion")
    assert [h.path for h in hist] == ["models/b.gguf", "models/a.gguf"]
    assert M.show_model(repo, "champion").entry.path == "models/b.gguf"
    rows = {r.path: r for r in M.list_models(repo)}
    assert rows["models/b.gguf"].aliases == ["champion"] and rows["models/a.gguf"].aliases == []
    cid = M.remove_model(repo, "models/a.gguf")
    assert "models/a.gguf" not in repo.tree_entries(cid)
    with pytest.raises(Exception):
        M.set_alias(repo, "models/b.gguf", "bad name!")


def test_export_gguf_loads_in_llama_cpp(repo, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    M.import_model(repo, default_gguf_path(), dest="models/smol.gguf")
    out = M.export_model(repo, "smol", tmp_path / "out.gguf")
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=64, n_threads=1, verbose=False)
    assert llm.n_vocab() == 49152
    llm.close()


def test_adapter_import_export_peft_and_merge(repo, tmp_path):
    pytest.importorskip("peft")
    import peft
    import torch
    import transformers
    from tests.helpers.tiny import tiny_llama_with_lora
    base, adapter = tiny_llama_with_lora(tmp_path / "base", tmp_path / "ad", ["hello world"] * 8,
                                         vocab_size=300, lora_alpha=8)
    b = M.import_model(repo, base, dest="models/tiny")
    a = M.import_model(repo, adapter, dest="adapters/tiny-lora")
    assert (b.kind, a.kind) == ("model", "adapter")
    rows = {r.path: r for r in M.list_models(repo)}
    assert rows["adapters/tiny-lora"].format == "peft" and rows["models/tiny"].parameters > 0
    out = M.export_model(repo, "adapters/tiny-lora", tmp_path / "exported")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base))
    pm = peft.PeftModel.from_pretrained(model, str(out))
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        want = pm(ids).logits
        merged = M.merge_model(repo, "models/tiny+adapters/tiny-lora", "models/tiny-merged")
        assert merged.commit and merged.kind == "model"
        lin = repo.lineage(merged.commit)
        assert lin["inputs"]["adapter"] == a.digest and lin["inputs"]["base"] == b.digest
        mm = transformers.AutoModelForCausalLM.from_pretrained(str(repo.workpath("models/tiny-merged")))
        assert torch.allclose(mm(ids).logits, want, atol=1e-4)


def test_cli_list_show_json(repo, monkeypatch):
    M.import_model(repo, default_gguf_path(), dest="models/smol.gguf")
    monkeypatch.chdir(repo.root)
    r = CliRunner().invoke(main, ["model", "list", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["path"] == "models/smol.gguf"
    r = CliRunner().invoke(main, ["model", "show", "nope", "--json"])
    assert r.exit_code == 1
