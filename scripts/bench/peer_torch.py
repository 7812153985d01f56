#!/usr/bin/env python3
# Copy of shared/bench/peer_torch.py (shared/ does not travel with the repository). Keep it identical
# to the shared one apart from this comment, so that the same seeds give the same files/figures.
"""The peer a user would run instead of imgpipe: torchvision preprocessing + a torchvision
ResNet-50 (random weights) over a folder of JPEGs. Prints one JSON line with images/s and
peak memory, to compare with imgpipe on the same files in the same run.
  --mode preprocess : decode, resize shorter side 256, center crop 224, ImageNet normalize
  --mode classify   : the same, then the model and top-5
  --decode pil      : PIL in a DataLoader with --workers processes (the usual recipe)
  --decode nvjpeg   : torchvision.io.decode_jpeg on the GPU (needs --device cuda)
  --draft           : with --decode pil, Image.draft('RGB', (224, 224)) before loading: libjpeg
                      decodes at 1/2, 1/4 or 1/8 scale where the result still covers the 224x224
                      crop (the speed-minded PIL user's choice, as imgpipe's decode.jpeg_downscale;
                      not the exact tensors)
GPU machine: python3 has torch/torchvision. CPU here: Debian's python3-torch and
python3-torchvision, run with /usr/bin/python3."""
import argparse, glob, json, os, resource, time
import torch, torchvision
import torch.nn.functional as F

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True); p.add_argument("--mode", choices=["preprocess", "classify"], default="classify")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--decode", choices=["pil", "nvjpeg"], default="pil"); p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=128); p.add_argument("--precision", choices=["fp32", "fp16"], default="fp16")
    p.add_argument("--limit", type=int, default=0); p.add_argument("--draft", action="store_true")
    a = p.parse_args()
    files = sorted(glob.glob(os.path.join(a.images, "*.jpg")))[: a.limit or None]
    dev = torch.device(a.device); half = a.precision == "fp16" and dev.type == "cuda"
    torch.set_num_threads(max(1, os.cpu_count() if dev.type == "cpu" else 1))
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1) * 255
    model = None
    if a.mode == "classify":
        model = torchvision.models.resnet50().eval().to(dev)
        if half: model = model.half()
        if dev.type == "cuda": model = model.to(memory_format=torch.channels_last); torch.backends.cudnn.benchmark = True
    def finish(xb):  # uint8 NCHW on dev -> normalized float -> model
        xb = (xb.float() - mean) / std
        if half: xb = xb.half()
        if model is None: return xb.shape[0]
        if dev.type == "cuda": xb = xb.contiguous(memory_format=torch.channels_last)
        model(xb).float().softmax(1).topk(5).indices.cpu(); return xb.shape[0]
    def batches():
        if a.decode == "pil":
            import torchvision.transforms as T
            from PIL import Image
            tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
            class DS(torch.utils.data.Dataset):
                def __len__(self): return len(files)
                def __getitem__(self, i):
                    im = Image.open(files[i])
                    if a.draft: im.draft("RGB", (224, 224))
                    return tf(im.convert("RGB"))
            for xb in torch.utils.data.DataLoader(DS(), batch_size=a.batch, num_workers=a.workers, pin_memory=dev.type == "cuda"):
                yield xb.to(dev, non_blocking=True)
        else:
            for i in range(0, len(files), a.batch):
                imgs = torchvision.io.decode_jpeg([torchvision.io.read_file(f) for f in files[i:i + a.batch]], device=dev)
                out = []
                for im in imgs:
                    h, w = im.shape[1:]; s = 256 / min(h, w); nh, nw = round(h * s), round(w * s)
                    im = F.interpolate(im[None].float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
                    y0, x0 = (nh - 224) // 2, (nw - 224) // 2; out.append(im[0, :, y0:y0 + 224, x0:x0 + 224])
                yield torch.stack(out)
    with torch.inference_mode():
        if model is not None:  # warm-up outside the timed part, as a user's second batch would be
            x = torch.randn(a.batch, 3, 224, 224, device=dev); model(x.half() if half else x)
        if dev.type == "cuda": torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        t = time.time(); n = sum(finish(xb) for xb in batches())
        if dev.type == "cuda": torch.cuda.synchronize()
        dt = time.time() - t
    print(json.dumps({"peer": f"torchvision-{a.decode}{'-draft' if a.draft else ''}", "mode": a.mode, "device": a.device, "images": n,
                      "seconds": round(dt, 3), "images_per_s": round(n / dt, 1),
                      "peak_gpu_mib": (torch.cuda.max_memory_allocated() >> 20) if dev.type == "cuda" else 0,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10}))

if __name__ == "__main__":
    main()
