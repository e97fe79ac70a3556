import torch

from robolearn.nn.language import EMBED_DIM, LanguageEncoder


def test_bundled_sentence_model_embeds_offline_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    enc = LanguageEncoder(cache_dir=tmp_path)
    texts = ["lift the red cube", "pick up the red cube", "open the door", "lift the red cube"]
    emb = enc.encode(texts)
    assert emb.shape == (4, EMBED_DIM)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(4), atol=1e-4)
    assert torch.equal(emb[0], emb[3])
    assert emb[0] @ emb[1] > emb[0] @ emb[2]  # paraphrase closer than another task
    assert (enc.misses, enc.hits) == (3, 1)
    # a new encoder reuses the disk cache and never needs the model for cached strings
    cached = LanguageEncoder(model_dir=tmp_path / "no_model_here", cache_dir=tmp_path)
    assert torch.equal(cached.encode(["open the door"])[0], emb[2])
    assert cached.misses == 0
