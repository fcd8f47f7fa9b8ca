#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_header.c into tests/fuzz/corpus/.

Each seed is a whole safetensors file (8-byte little-endian header length, JSON header,
data section): valid files of several shapes, so that the fuzzer starts from inputs that
pass every check, and nasty ones that each stop at a different check. Seeds are small
(under 4 KiB) and the same every run. Files named seed-* belong to this script and are
rewritten; regression seeds that the fuzzer found (regress-*) are left alone.

Usage: tests/fuzz/make_corpus.py [--out DIR]
"""
import argparse
import json
import os
import struct

DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "U16": 16, "I16": 16, "F16": 16, "BF16": 16,
    "U32": 32, "I32": 32, "F32": 32, "U64": 64, "I64": 64, "F64": 64, "C64": 64,
    "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
MAX_SEED = 4096


def data_bytes(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))


def file_of(header, data_len=0, prefix_len=None):
    """A file: the prefix (the header's length unless given), the header, data_len bytes."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if prefix_len is None else prefix_len
    return struct.pack("<Q", n) + header + data_bytes(data_len)


def tensors_file(tensors, metadata=None, pad=False, order=None):
    """A valid file from (name, dtype, shape) triples laid out in the order given."""
    entries, offset = {}, 0
    for name, dtype, shape in tensors:
        count = 1
        for d in shape:
            count *= d
        size = count * DTYPE_BITS[dtype] // 8
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    obj = {}
    if metadata is not None:
        obj["__metadata__"] = metadata
    for name in order or entries:
        obj[name] = entries[name]
    header = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if pad:  # as the reference writer does: spaces up to a multiple of 8
        header += " " * (-len(header.encode("utf-8")) % 8)
    return file_of(header, offset)


def entry(dtype, shape, offsets):
    return '{"dtype":"%s","shape":%s,"data_offsets":%s}' % (dtype, shape, offsets)


def one(e):
    return '{"a":%s}' % e


def seeds():
    s = {}
    # Valid files.
    s["valid-empty"] = file_of("{}")
    s["valid-metadata-only"] = file_of('{"__metadata__":{"format":"pt","note":"caf\\u00e9"}}')
    s["valid-one-tensor"] = tensors_file([("weight", "F32", [2, 3])])
    s["valid-scalar"] = tensors_file([("step", "I64", [])])
    s["valid-zero-size"] = tensors_file(
        [("z0", "F16", [0]), ("a", "U8", [3]), ("z1", "BF16", [4, 0]), ("b", "I32", [1])])
    s["valid-every-dtype"] = tensors_file(
        [("t_" + d.lower(), d, [2, 4]) for d in DTYPE_BITS], metadata={"format": "pt"})
    s["valid-key-order"] = tensors_file(
        [("c", "U8", [3]), ("a", "I16", [2, 2]), ("b", "F64", [1])],
        metadata={"k": "v"}, order=["b", "c", "a"])
    s["valid-padded"] = tensors_file([("embed", "BF16", [4, 4]), ("norm", "F32", [4])],
                                     metadata={"format": "pt"}, pad=True)
    s["valid-unicode"] = file_of('{"\xe6\xa8\xa1\xe5\x9e\x8b":%s,"caf\\u00e9\\ud83d\\ude00":%s}'
                                 % (entry("U8", "[1]", "[0,1]"), entry("U8", "[2]", "[1,3]")), 3)
    s["valid-32-dims"] = tensors_file([("deep", "U8", [1] * 31 + [2])])
    s["valid-sub-byte"] = tensors_file(
        [("f4", "F4", [3, 2]), ("e2m3", "F6_E2M3", [4]), ("e3m2", "F6_E3M2", [2, 2, 2])])
    s["valid-transformer"] = tensors_file(
        [("model.embed_tokens.weight", "BF16", [8, 4]),
         ("model.layers.0.self_attn.q_proj.weight", "BF16", [4, 4]),
         ("model.layers.0.mlp.up_proj.weight", "F8_E4M3", [4, 8]),
         ("model.layers.0.mlp.up_proj.weight_scale", "F8_E8M0", [4]),
         ("model.norm.weight", "F32", [4]), ("lm_head.weight", "BF16", [8, 4])],
        metadata={"format": "pt", "total_size": "224"})
    s["valid-many"] = tensors_file([("t%d" % i, "U8", [1]) for i in range(40)])
    s["valid-whitespace-extra-keys"] = file_of(
        ' \t\r\n{ "a" :\n{"dtype" : "U8", "shape":[ 2 ] ,"data_offsets":[ 0 , 2 ],'
        '"extra":{"x":[1,2,3]}} }\r\n\t ', 2)
    # The length prefix.
    s["bad-short-file"] = b"\x02\x00\x00\x00\x00\x00\x00"
    s["bad-length-past-eof"] = file_of("{}", prefix_len=100)
    s["bad-length-over-cap"] = file_of("{}", prefix_len=100_000_001)
    s["bad-length-zero"] = file_of("", prefix_len=0)
    # JSON syntax and encoding.
    s["bad-trailing-garbage"] = file_of("{}[]")
    s["bad-utf8"] = file_of(b'{"\xff\xc0\xaf\xed\xa0\x80":1}')
    s["bad-control-byte"] = file_of(b'{"a":1,\x01}')
    s["bad-nul-escape"] = file_of('{"a\\u0000b":%s}' % entry("U8", "[1]", "[0,1]"), 1)
    s["bad-bom"] = file_of(b"\xef\xbb\xbf{}")
    s["bad-deep-nesting"] = file_of('{"a":' + "[" * 1500 + "]" * 1500 + "}")
    # Tensor entries.
    s["bad-dtype"] = file_of(one(entry("F33", "[1]", "[0,4]")), 4)
    s["bad-missing-keys"] = file_of('{"a":{"dtype":32},"b":{"shape":[1]},"c":5}', 4)
    s["bad-duplicate-key"] = file_of(
        one('{"dtype":"F32","shape":[1],"data_offsets":[0,4],"dtype":"I32"}'), 4)
    s["bad-dims"] = file_of(one(entry("U8", "[-1,1.5,18014398509481984]", "[0,1]")), 1)
    s["bad-33-dims"] = file_of(one(entry("U8", "[" + ",".join(["1"] * 33) + "]", "[0,1]")), 1)
    s["bad-count-overflow"] = file_of(
        one(entry("U8", "[4294967296,4294967296,4294967296]", "[0,1]")), 1)
    s["bad-f4-odd"] = file_of(one(entry("F4", "[3]", "[0,2]")), 2)
    s["bad-offsets"] = file_of(one(entry("U8", "[4]", "[8,4]")), 8)
    s["bad-size-mismatch"] = file_of(one(entry("F32", "[2]", "[0,4]")), 4)
    # Layout.
    s["bad-overlap"] = file_of('{"a":%s,"b":%s}' % (entry("F32", "[2]", "[0,8]"),
                                                    entry("F32", "[2]", "[4,12]")), 12)
    s["bad-gap"] = file_of('{"a":%s,"b":%s}' % (entry("U8", "[4]", "[0,4]"),
                                                entry("U8", "[4]", "[8,12]")), 12)
    s["bad-past-end"] = file_of(one(entry("U8", "[8]", "[0,8]")), 4)
    s["bad-trailing-bytes"] = file_of(one(entry("U8", "[4]", "[0,4]")), 8)
    # Names and metadata.
    s["bad-duplicate-names"] = file_of('{"a":%s,"a":%s}' % (entry("U8", "[4]", "[0,4]"),
                                                            entry("U8", "[4]", "[4,8]")), 8)
    s["bad-metadata"] = file_of('{"__metadata__":{"k":"1","k":"2","n":3},"__metadata__":[]}')
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(here, "corpus"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in os.listdir(args.out):
        if name.startswith("seed-"):
            os.remove(os.path.join(args.out, name))
    all_seeds = seeds()
    for name, content in sorted(all_seeds.items()):
        if len(content) > MAX_SEED:
            raise SystemExit("seed %s is %d bytes, over %d" % (name, len(content), MAX_SEED))
        with open(os.path.join(args.out, "seed-" + name), "wb") as f:
            f.write(content)
    print("wrote %d seeds to %s" % (len(all_seeds), args.out))


if __name__ == "__main__":
    main()
