#!/usr/bin/python3
"""Write the committed seed corpora of the fuzz harnesses (tests/fuzz/corpus/<harness>/).

  decode   the small decoder fixtures of tests/data/decode (PNG and JPEG variants, truncated and
           hostile ones, the other formats) and two Fashion-MNIST test images
  request  one input per shape of request: query strings, JSON and KServe bodies, multipart parts
           (byte 0 = route | mode << 2, see fuzz_request.c)
  onnx     the shipped models/fashion-cnn.onnx and tiny torch exports of the op patterns the
           engine supports (conv, BN, pools, CBAM-style gating, concat, flatten + linear)
  sidecar  the shipped sidecar and variants (labels_file, center_crop rgb, letterbox)

Run with Debian's python3 (torch, onnx) from the repository root; the output is deterministic
apart from torch's exporter version. Re-run only to change the seeds.
"""
import json
import os
import shutil
import struct
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "tests", "fuzz", "corpus")


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def decode_seeds():
    src = os.path.join(REPO, "tests", "data", "decode")
    for n in sorted(os.listdir(src)):
        p = os.path.join(src, n)
        if os.path.isfile(p) and n.split(".")[-1] in ("png", "jpg", "gif", "tif", "webp", "bmp") \
                and os.path.getsize(p) <= 8192:
            shutil.copy(p, os.path.join(OUT, "decode", n))
    for n in ("test_00000_ankle_boot.png", "test_00001_pullover.png"):
        shutil.copy(os.path.join(REPO, "tests", "data", "fashion", n), os.path.join(OUT, "decode", n))


def request_seeds():
    import base64
    png = open(os.path.join(REPO, "tests", "data", "fashion", "test_00000_ankle_boot.png"), "rb").read()
    b64 = base64.b64encode(png[:64]).decode()
    PREDICT, EXPLAIN, SANITY, ACTIV = 0, 1, 2, 3
    QUERY, JSON_, KSERVE, MULTI = 0, 1, 2, 3

    def req(name, route, mode, text):
        put("request", name, bytes([route | mode << 2]) + text.encode())

    req("query_explain", EXPLAIN, QUERY, "methods=gradcam,saliency&target=Ankle%20boot&top_k=3&output=raw,heatmap_png"
        "&colormap=viridis&alpha=0.3&size=model&ig_steps=20&ig_method=riemann_trapezoid&baseline=blur")
    req("query_layer", EXPLAIN, QUERY, "methods=activations,attention,cam&layer=%2Fconv4%2FRelu&seed=18446744073709551615")
    req("query_sanity", SANITY, QUERY, "methods=gradcam&sanity=all&sanity_order=independent&sanity_layers=blocks"
        "&sanity_init=normal&sanity_init_std=0.02&sanity_target=argmax&sanity_noise_samples=2&per_image=true")
    req("query_occlusion", EXPLAIN, QUERY, "methods=occlusion,smoothgrad&occlusion_window=7&occlusion_stride=3"
        "&smoothgrad_samples=4&smoothgrad_noise=0.1&smoothgrad_type=vargrad&smoothgrad_base=integrated_gradients")
    req("query_bad_numbers", EXPLAIN, QUERY, "alpha=NaN&clip_percentile=Infinity&top_k=-1&ig_steps=1e3&seed=-1")
    req("query_predict", PREDICT, QUERY, "top_k=10")
    req("query_activations", ACTIV, QUERY, "colormap=gray&target=3&output=raw")
    req("json_explain", EXPLAIN, JSON_, json.dumps({"image": b64, "methods": ["gradcam", "scorecam"], "scorecam_channels": 4,
                                                   "faithfulness": True, "faithfulness_steps": 8, "target": 9,
                                                   "layer": "/conv3/Relu", "reduce": "l2"}))
    req("json_sanity", SANITY, JSON_, json.dumps({"images": [b64, b64], "methods": "saliency,gradcam",
                                                 "sanity": ["model", "label"], "sanity_layers": "/fc/Gemm,/conv1/conv/Conv"}))
    req("json_dup", EXPLAIN, JSON_, '{"image": "%s", "top_k": 1, "top_k": 2}' % b64)
    req("kserve", PREDICT, KSERVE, json.dumps({"instances": [{"b64": b64}, {"image_bytes": {"b64": b64}}],
                                               "parameters": {"top_k": 2}}))
    req("kserve_explain", EXPLAIN, KSERVE, json.dumps({"instances": [{"b64": b64}], "parameters": {"methods": ["saliency"]}}))
    def form(ctype, boundary, parts, close=True):
        body = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n" for k, v in parts)
        return ctype + "\n" + body + (f"--{boundary}--\r\n" if close else "")
    req("multipart", EXPLAIN, MULTI, form("multipart/form-data; boundary=XyZ", "XyZ",
                                          [("image", png[:40].decode("latin-1")), ("methods", "gradcam,edge"), ("top_k", "2")]))
    req("multipart_sanity", SANITY, MULTI, form('multipart/form-data; boundary="a"', "a",
                                                [("images", "abc"), ("images", "def"), ("sanity", "all"), ("per_image", "false")]))
    req("multipart_nested", EXPLAIN, MULTI, "multipart/form-data; boundary=b\n--b\r\nContent-Disposition: form-data; "
        "name=\"files\"\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--\r\n")


def onnx_seeds():
    shutil.copy(os.path.join(REPO, "models", "fashion-cnn.onnx"), os.path.join(OUT, "onnx", "fashion-cnn.onnx"))
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.manual_seed(0)

    class Tiny(nn.Module):  # conv + BN + relu + maxpool + GAP + linear: the CAM head
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    class Gate(nn.Module):  # CBAM-style: mean/max over channels, concat, sigmoid gating, avgpool
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, groups=1)
            self.sp = nn.Conv2d(2, 1, 3, padding=1)
            self.fc = nn.Linear(4 * 2 * 2, 2)

        def forward(self, x):
            x = F.relu(self.conv(x))
            m = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
            x = x * torch.sigmoid(self.sp(m))
            x = F.avg_pool2d(x, 2)
            return self.fc(torch.flatten(x, 1))

    class Res(nn.Module):  # residual add, depthwise conv, clip (ReLU6), global pool via mean
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 6, 1)
            self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
            self.fc = nn.Linear(6, 4)

        def forward(self, x):
            y = self.a(x)
            y = y + F.relu6(self.dw(y))
            return torch.softmax(self.fc(y.mean((2, 3))), 1)

    for name, model, shape, opset in (("tiny_cam", Tiny(), (1, 1, 8, 8), 13), ("tiny_gate", Gate(), (1, 3, 8, 8), 13),
                                      ("tiny_res_opset11", Res(), (1, 3, 6, 6), 11), ("tiny_cam_opset9", Tiny(), (1, 1, 8, 8), 9)):
        model.eval()
        p = os.path.join(OUT, "onnx", name + ".onnx")
        torch.onnx.export(model, torch.zeros(*shape), p, opset_version=opset, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True)


def onnx_op_seeds():
    """Data movement and math ops (Transpose, Split/Slice, Gather, Expand, Tile, DepthToSpace, Pow, Sqrt, Exp, Log,
    Abs, Erf, Reciprocal, Neg, Max, Min, Where) in one small graph, at opset 9 (Split) and 13."""
    import torch
    import torch.nn as nn
    torch.manual_seed(0)
    mask = torch.rand(1, 4, 4, 4) > 0.5

    class Ops(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8 + 4 * 4 * 4, 3)

        def forward(self, x):
            x = self.conv(x)                                               # (N, 8, 4, 4)
            n, c, h, w = x.shape
            x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
            a, b = x.chunk(2, dim=1)
            a = torch.maximum(a.abs() ** 1.5, torch.erf(b)) - torch.minimum(torch.exp(-b), a[:, :1].expand(-1, 4, -1, -1))
            b = torch.where(mask, torch.sqrt(b * b + 1) + torch.log(b.abs() + 1), 1 / (b.abs() + 1))
            s = nn.functional.pixel_shuffle(a.repeat(1, 4, 1, 1), 2)        # (N, 4, 8, 8)
            return self.fc(torch.cat([s.flatten(1), (-b[:, [2, 0, 1, 3]]).flatten(1)], 1))

    for name, opset in (("tiny_data_math_opset9", 9), ("tiny_data_math_opset13", 13)):
        p = os.path.join(OUT, "onnx", name + ".onnx")
        torch.onnx.export(Ops().eval(), torch.zeros(1, 3, 4, 4), p, opset_version=opset, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True)


def sidecar_seeds():
    shipped = open(os.path.join(REPO, "models", "fashion-cnn.json")).read()
    put("sidecar", "fashion-cnn.json", shipped)
    s = json.loads(shipped)
    s2 = dict(s, input=dict(s["input"], resize="center_crop", invert=True))
    s2.pop("randomization_groups")
    put("sidecar", "center_crop.json", json.dumps(s2))
    put("sidecar", "minimal.json", json.dumps({"input": {"color": "gray", "resize": "letterbox", "scale": 1,
                                                         "mean": [0.5], "std": [0.25]}}))
    put("sidecar", "rgb_mismatch.json", json.dumps({"input": {"color": "rgb", "mean": [0.485, 0.456, 0.406],
                                                              "std": [0.229, 0.224, 0.225]}, "cam_layer": "/conv3/Relu"}))
    put("sidecar", "labels_file.json", json.dumps({"labels_file": "README.md", "cam_layer": "nope"}))
    put("sidecar", "bad_types.json", '{"labels": [1, null], "attention_layers": "x", "randomization_groups": [[]]}')


def onnx_norm_act_seeds():
    """Normalizations and activations (LayerNorm as the opset-13 chain the loader fuses and as the opset-17 op,
    GELU in both forms, Mish, PReLU, ELU, InstanceNorm, GroupNorm, LpNormalization-like norms, logsumexp,
    LogSoftmax) in one small graph, at opsets 13 and 17."""
    import torch
    import torch.nn as nn
    torch.manual_seed(0)

    class NormAct(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.prelu, self.inorm, self.gnorm = nn.PReLU(6), nn.InstanceNorm2d(6, affine=True), nn.GroupNorm(3, 6)
            self.ln = nn.LayerNorm(4)
            self.fc = nn.Linear(6 * 4 * 4 + 2 * 4 * 4, 3)

        def forward(self, x):
            x = self.prelu(self.conv(x))                                   # (N, 6, 4, 4)
            a, b = x[:, :3], x[:, 3:]
            a = nn.functional.gelu(self.inorm(x)[:, :3]) + nn.functional.mish(a)
            b = nn.functional.gelu(self.ln(b), approximate="tanh") * nn.functional.elu(self.gnorm(x)[:, 3:])
            y = torch.cat([a, b], 1)
            n = torch.cat([torch.norm(y, 2, 1, keepdim=True), torch.logsumexp(y, 1, keepdim=True)], 1)
            return self.fc(torch.cat([torch.log_softmax(y, 1).flatten(1), n.flatten(1)], 1))

    for name, opset in (("tiny_norm_act_opset13", 13), ("tiny_norm_act_opset17", 17)):
        p = os.path.join(OUT, "onnx", name + ".onnx")
        torch.onnx.export(NormAct().eval(), torch.zeros(1, 3, 4, 4), p, opset_version=opset, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True)


if __name__ == "__main__":
    for d in ("decode", "request", "onnx", "sidecar"):
        shutil.rmtree(os.path.join(OUT, d), ignore_errors=True)
        os.makedirs(os.path.join(OUT, d))
    decode_seeds()
    request_seeds()
    onnx_seeds()
    onnx_op_seeds()
    sidecar_seeds()
    onnx_norm_act_seeds()
    for d in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, d))
        print(d, len(files), "files", sum(os.path.getsize(os.path.join(OUT, d, f)) for f in files), "bytes")
