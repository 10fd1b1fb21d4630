"""The generative models' targets, each measured on its bundled config on the CPU, printed beside its reference.

    python benchmarks/generative.py                        # all, about an hour on 2 idle cores
    python benchmarks/generative.py ae denoise vae         # a subset: ae, denoise, gan, vae, dcgan, conditional
    python benchmarks/generative.py dcgan --seeds 0 --steps 500 --out /tmp/bench   # shorter budget, scratch folder
    python benchmarks/generative.py conditional --docs docs   # also writes the README's pictures to docs/

Targets and how each is measured:
- conv AE, mnist5k, 32-d code (configs/ae/mnist5k-conv.yaml): test BCE/pixel <= 0.078, beside a plain loop of the
  old recipe (same widths, no batch norm, no shifts, constant Adam 1e-3, 40 epochs) written out below.
- denoising AE (configs/ae/mnist5k-denoising.yaml): test BCE/pixel against the clean digits at noise 0.3 and 0.5,
  beside the plain AE's BCE on clean inputs.
- GAN (MLP), digits: all 10 digits present in the LeNet judge's histogram of 1,000 samples; FLD and PRDC.
- VAE, mnist5k: test ELBO >= pytorch/examples' 784-400-20 VAE loop (below) at the same steps, batch and split,
  both scored with vae.test_elbo's single-sample estimator and seed; FLD and PRDC of its prior samples.
- DCGAN, mnist5k (configs/dcgan/mnist5k.yaml: averaged G, PacGAN pairs, R1), per seed: every digit at 5-15% of
  1,000 samples, and FLD <= a plain pytorch/examples-style loop of the same recipe without those three, same
  budget and split, both scored by the same LeNet judge in this process; PRDC beside.
- conditional DCGAN (configs/dcgan/mnist5k-conditional.yaml): the judge puts >= 95% of the samples drawn for each
  digit in that digit, averaged over digits.
- `--speed`: DCGAN training images/s, dlforge / reference, interleaving bursts of both steps under one load.

dlforge runs go through `launch.run.train_run`, exactly what `dlforge train` does. The references import nothing
from dlforge except the data split and the scoring, so they are the "plain loop" the targets name.
Results are printed and written to <out>/generative.json, with the load average before and after each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the generative package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from generative.common import torch_threads  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def dlforge_run(config: str, out: Path, name: str, overrides: list[str]) -> tuple[dict, Path]:
    from launch.config import load_config
    from launch.run import train_run

    spec = load_config(REPO / config, ["tracking.wandb=disabled", *overrides])
    run_dir = out / name
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    started, cpu = time.perf_counter(), time.process_time()
    result = train_run(spec, run_dir)
    # CPU seconds are what the run would take alone on an idle core; wall seconds depend on the machine's load
    return {**result.summary, "wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}, run_dir


# --- conv autoencoders -----------------------------------------------------------------------------


def reference_autoencoder() -> nn.Module:
    """The old recipe as a plain module: conv 32-64 (stride 2) -> 32-d code -> transposed convs 64-32, ReLU."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),  # 28 -> 14 -> 7
        nn.Flatten(), nn.Linear(64 * 7 * 7, 32),  # the code
        nn.Linear(32, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),  # 7 -> 14 -> 28 logits
    )  # fmt: skip


def bench_ae(args) -> dict:
    from generative.data import load_images
    from generative.metrics import reconstruction_errors

    summary, _ = dlforge_run("configs/ae/mnist5k-conv.yaml", args.out, "ae-conv", args.overrides("ae"))
    data = load_images("mnist5k", seed=0)
    x_train, x_test = torch.from_numpy(data.x_train), torch.from_numpy(data.x_test)
    torch.manual_seed(0)
    model = reference_autoencoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = 40 * len(x_train) // 128  # 40 epochs at batch 128
    started = time.perf_counter()
    with torch_threads(1):
        for _ in range(steps):
            x = x_train[torch.randint(len(x_train), (128,))]
            loss = F.binary_cross_entropy_with_logits(model(x), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            reference = reconstruction_errors(x_test, torch.sigmoid(model(x_test)))["bce_per_pixel"]
    bce = summary["eval/bce_per_pixel"]
    return {"test_bce_per_pixel": bce, "mse_per_pixel": summary["eval/mse_per_pixel"], "goal": "<= 0.078",
            "met": bce <= 0.078, "plain_loop_bce_per_pixel": reference, "plain_loop_steps": steps,
            "wall_s": summary["wall_s"], "cpu_s": summary["cpu_s"],
            "plain_loop_s": time.perf_counter() - started}  # fmt: skip


def bench_denoise(args) -> dict:
    summary, _ = dlforge_run("configs/ae/mnist5k-denoising.yaml", args.out, "ae-denoise", args.overrides("ae"))
    return {
        "bce_per_pixel_at_noise_0.3": summary["eval/denoise0.3_bce_per_pixel"],
        "bce_per_pixel_at_noise_0.5": summary["eval/denoise0.5_bce_per_pixel"],
        "bce_per_pixel_clean_input": summary["eval/bce_per_pixel"],
        "wall_s": summary["wall_s"],
    }


# --- MLP GAN on digits -------------------------------------------------------------------------------


def bench_gan(args) -> dict:
    summary, _ = dlforge_run("configs/gan/digits.yaml", args.out, "gan-digits", args.overrides("gan"))
    shares = [summary[f"eval/class_{c}"] for c in range(10)]
    present = int(summary["eval/classes_present"])
    return {"classes_present": present, "class_shares": shares, "fld": summary["eval/fld"], **prdc_of(summary),
            "goal": "10 of 10", "met": present == 10, "wall_s": summary["wall_s"]}  # fmt: skip


def prdc_of(summary: dict) -> dict:
    return {key: summary[f"eval/{key}"] for key in ("precision", "recall", "density", "coverage")}


# --- VAE vs pytorch/examples' 784-400-20 VAE ------------------------------------------------------------


class ReferenceVAE(nn.Module):
    """pytorch/examples vae/main.py, verbatim in structure: 784-400-20(x2)-400-784."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.fc4(F.relu(self.fc3(z))).view(-1, 1, 28, 28), mu, logvar  # logits


def bench_vae(args) -> dict:
    from generative.data import load_images

    summary, _ = dlforge_run("configs/vae/mnist5k.yaml", args.out, "vae", args.overrides("vae"))
    steps = args.steps or 3000  # the bundled config's budget
    data = load_images("mnist5k", seed=0)
    torch.manual_seed(0)
    model, x_train = ReferenceVAE(), torch.from_numpy(data.x_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    with torch_threads(1):
        for _ in range(steps):
            x = x_train[torch.randint(len(x_train), (128,))]
            loss, _, _ = _vae_loss(model, x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    reference_time = time.perf_counter() - started
    model.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        x_test = torch.from_numpy(data.x_test)
        reference_elbo = -sum(len(b) * float(_vae_loss(model, b)[0]) for b in x_test.split(500)) / len(x_test)
    elbo = summary["eval/elbo"]
    return {"dlforge_test_elbo": elbo, "reference_test_elbo": reference_elbo, "steps": steps,
            "goal": "dlforge >= reference", "met": elbo >= reference_elbo, "fld": summary.get("eval/fld"),
            **prdc_of(summary), "dlforge_wall_s": summary["wall_s"], "reference_train_s": reference_time}  # fmt: skip


def _vae_loss(model, x):
    from generative.vae import negative_elbo

    logits, mu, logvar = model(x)
    return negative_elbo(logits, x, mu, logvar)


# --- DCGAN vs a plain loop of the same recipe ---------------------------------------------------------


def reference_dcgan(nz: int, ngf: int, ndf: int) -> tuple[nn.Module, nn.Module]:
    """pytorch/examples dcgan's networks, cut to 28x28 (7 -> 14 -> 28), logits out of D."""
    netG = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 2, 7, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),  # 7x7
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),  # 14x14
        nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh(),  # 28x28
    )  # fmt: skip
    netD = nn.Sequential(
        nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),  # 14x14
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),  # 7x7
        nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False), nn.Flatten(),  # logits
    )  # fmt: skip

    def weights_init(m):  # pytorch/examples
        if "Conv" in type(m).__name__:
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif "BatchNorm" in type(m).__name__:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    netG.apply(weights_init)
    netD.apply(weights_init)
    return netG, netD


def reference_step(netG, netD, optG, optD, real, nz):
    """One step of pytorch/examples' dcgan loop, with BCEWithLogitsLoss on logits."""
    criterion = nn.BCEWithLogitsLoss()
    b = real.size(0)
    netD.zero_grad()
    errD_real = criterion(netD(real), torch.ones(b, 1))
    errD_real.backward()
    fake = netG(torch.randn(b, nz, 1, 1))
    errD_fake = criterion(netD(fake.detach()), torch.zeros(b, 1))
    errD_fake.backward()
    optD.step()
    netG.zero_grad()
    errG = criterion(netD(fake), torch.ones(b, 1))
    errG.backward()
    optG.step()
    return errD_real.item() + errD_fake.item()


def bench_dcgan(args) -> dict:
    results = {}
    for seed in args.seeds:  # each seed printed when done: a long sweep interrupted still leaves its seeds
        results[f"seed{seed}"] = dcgan_seed(args, seed)
        print(f"dcgan seed{seed}", json.dumps(results[f"seed{seed}"], default=float), flush=True)
    return results


def dcgan_seed(args, seed: int) -> dict:
    from launch.config import load_config

    overrides = [*args.overrides("dcgan"), f"seed={seed}"]
    config = load_config(REPO / "configs/dcgan/mnist5k.yaml", overrides).config
    summary, run_dir = dlforge_run("configs/dcgan/mnist5k.yaml", args.out, f"dcgan-seed{seed}", overrides)
    plain = plain_dcgan(config)
    shares = [summary[f"eval/class_{c}"] for c in range(10)]
    result = {
        "dlforge_fld": summary["eval/fld"], "reference_fld": plain["fld"],
        "dlforge_class_shares": shares, "reference_class_shares": plain["class_shares"],
        "dlforge_prdc": prdc_of(summary), "reference_prdc": plain["prdc"],
        "dlforge_images_per_s": summary["charts/images_per_s"], "reference_images_per_s": plain["images_per_s"],
        "coverage_met": all(0.05 <= s <= 0.15 for s in shares),
        "reference_coverage_met": all(0.05 <= s <= 0.15 for s in plain["class_shares"]),
        "dlforge_wall_s": summary["wall_s"], "run_dir": str(run_dir),
    }  # fmt: skip
    result["fld_met"] = result["dlforge_fld"] <= result["reference_fld"]
    if args.speed:
        result["interleaved_ratio"] = interleaved_throughput(config, rounds=10, steps=50)
    return result


def plain_dcgan(config) -> dict:
    """The reference for one DCGAN config: the same networks, init, optimiser, batch, steps, seed and data split in
    its own plain loop, scored by the judge dlforge's run used (fit_judge caches it; another process retrains the
    same one from the seed) on `eval_samples` samples."""
    from generative.classifier import fit_judge
    from generative.data import load_images
    from generative.metrics import FrechetLeNetDistance, JudgeFeatures, class_histogram, prdc

    data = load_images(config.data, seed=config.seed, image_size=config.image_size)
    torch.manual_seed(config.seed)
    netG, netD = reference_dcgan(config.latent_dim, config.ngf, config.ndf)
    optD = torch.optim.Adam(netD.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
    optG = torch.optim.Adam(netG.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
    x_train = torch.from_numpy(data.x_train) * 2 - 1
    started = time.perf_counter()
    with torch_threads(config.torch_threads):
        for _ in range(config.total_steps):
            reference_step(netG, netD, optG, optD, x_train[torch.randint(len(x_train), (config.batch_size,))],
                           config.latent_dim)  # fmt: skip
        images_per_s = config.total_steps * config.batch_size / (time.perf_counter() - started)
        judge = fit_judge(data, steps=config.judge_steps, seed=config.seed, device=torch.device("cpu"))
        x_test = torch.from_numpy(data.x_test)
        netG.eval()
        with torch.no_grad():
            samples = ((netG(torch.randn(config.eval_samples, config.latent_dim, 1, 1)) + 1) / 2).clamp(0, 1)
            features = JudgeFeatures(judge)
            return {"fld": FrechetLeNetDistance(judge, x_test)(samples),
                    "prdc": prdc(features(x_test), features(samples)),
                    "class_shares": class_histogram(judge.predict(samples), 10).tolist(),
                    "images_per_s": images_per_s}  # fmt: skip


def bench_conditional(args) -> dict:
    summary, run_dir = dlforge_run(
        "configs/dcgan/mnist5k-conditional.yaml", args.out, "dcgan-conditional", args.overrides("dcgan")
    )
    accuracy = summary["eval/label_accuracy"]
    result = {"label_accuracy": accuracy, "goal": ">= 0.95", "met": accuracy >= 0.95, "fld": summary["eval/fld"],
              **prdc_of(summary), "class_shares": [summary[f"eval/class_{c}"] for c in range(10)],
              "wall_s": summary["wall_s"], "run_dir": str(run_dir)}  # fmt: skip
    if args.docs:
        result["pictures"] = write_pictures(run_dir, args.docs)
    return result


def write_pictures(run_dir: Path, docs: Path) -> list[str]:
    """The README's pictures from a conditional DCGAN run: 8 samples of each digit, one row per digit (what
    `dlforge generate RUN --n 80` writes), and the run's last interpolation strip."""
    import shutil

    from launch.run import generate_run

    docs.mkdir(parents=True, exist_ok=True)
    grid = generate_run(run_dir, n=80, out=str(docs / "dcgan-conditional-grid.png"), seed=0)
    strip = sorted((run_dir / "media").glob("eval_interpolation-*.png"))[-1]
    shutil.copyfile(strip, docs / "dcgan-conditional-interpolation.png")
    return [str(grid), str(docs / "dcgan-conditional-interpolation.png")]


def interleaved_throughput(config, *, rounds: int, steps: int) -> float:
    """dlforge's plain step vs the reference step, alternating bursts so both see the same machine load."""
    import dataclasses

    from generative import dcgan
    from generative.adversarial import Stability, discriminator_loss, generator_loss

    torch.manual_seed(0)
    x = torch.rand(4000, 1, 28, 28) * 2 - 1
    G, D = dcgan.build_networks(dataclasses.replace(config, stability=Stability()), (1, 28, 28))  # the plain step
    optG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    netG, netD = reference_dcgan(config.latent_dim, config.ngf, config.ndf)
    refG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    refD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def ours():  # adversarial.train_adversarial's step body (plain)
        real = x[torch.randint(len(x), (config.batch_size,))]
        fake = G(torch.randn(config.batch_size, config.latent_dim))
        d_loss = discriminator_loss(D(real), D(fake.detach()))
        optD.zero_grad(set_to_none=True)
        d_loss.backward()
        optD.step()
        D.requires_grad_(False)
        g_loss = generator_loss(D(fake))
        optG.zero_grad(set_to_none=True)
        g_loss.backward()
        optG.step()
        D.requires_grad_(True)
        return d_loss.item()

    def theirs():
        return reference_step(netG, netD, refG, refD, x[torch.randint(len(x), (config.batch_size,))],
                              config.latent_dim)  # fmt: skip

    times = {"ours": 0.0, "theirs": 0.0}
    with torch_threads(config.torch_threads):
        for _ in range(rounds):
            for name, step in (("ours", ours), ("theirs", theirs)):
                started = time.perf_counter()
                for _ in range(steps):
                    step()
                times[name] += time.perf_counter() - started
    return times["theirs"] / times["ours"]


BENCHES = {"ae": bench_ae, "denoise": bench_denoise, "gan": bench_gan, "vae": bench_vae, "dcgan": bench_dcgan,
           "conditional": bench_conditional}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", help=f"any of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dlforge-bench"), help="scratch folder for runs")
    parser.add_argument("--steps", type=int, default=None, help="override every config's total_steps")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1, 2],
                        help="DCGAN seeds, comma-separated (default 0,1,2)")  # fmt: skip
    parser.add_argument("--speed", action="store_true", help="also measure DCGAN images/s against the reference")
    parser.add_argument("--docs", type=Path, default=None, help="write the README's pictures to this folder")
    args = parser.parse_args()
    unknown = [name for name in args.which if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    args.which = args.which or list(BENCHES)
    args.overrides = lambda kind: [] if args.steps is None else [f"total_steps={args.steps}",
                                                                 f"eval_every={args.steps}"]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.which:
        started, load = time.perf_counter(), os.getloadavg()[0]
        results[name] = BENCHES[name](args)
        results[name]["bench_wall_s"] = time.perf_counter() - started
        results[name]["load_average"] = [round(load, 2), round(os.getloadavg()[0], 2)]  # before, after
        print(name, json.dumps(results[name], default=float), flush=True)
    (args.out / "generative.json").write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
