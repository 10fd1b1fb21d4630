"""Issue 5's targets for the generative models, each measured on the bundled config, on the CPU.

    python benchmarks/generative.py                 # all four, about 15 minutes on 2 shared cores
    python benchmarks/generative.py ae vae          # a subset: ae, gan, vae, dcgan
    python benchmarks/generative.py dcgan --steps 500 --out /tmp/bench   # shorter budget, scratch folder

Targets and how each is measured:
- conv AE, mnist5k, 32-d code: test BCE/pixel <= 0.09, from configs/ae/mnist5k-conv.yaml's summary.
- GAN (MLP), digits: all 10 digits present in the LeNet judge's histogram of 1,000 samples (configs/gan/digits.yaml).
- VAE, mnist5k: test ELBO >= pytorch/examples' 784-400-20 VAE loop (written out below) at the same steps, batch and
  split; both scored with vae.test_elbo's single-sample estimator and seed.
- DCGAN, mnist5k: FLD <= a plain pytorch/examples-style loop of the same recipe and budget (below), each digit at
  5-15% of samples; both scored by the same LeNet judge in this process.
- DCGAN: training images/s, dlforge / reference >= 1.0, from each loop's own training time (evaluation excluded),
  plus an interleaved re-measurement that alternates bursts of both steps under the same machine load.

dlforge runs go through `launch.run.train_run`, exactly what `dlforge train` does. The references import nothing
from dlforge except the data split and the scoring, so they are the "plain loop" the targets name.
Results are printed and written to <out>/generative.json.
"""

from __future__ import annotations

import argparse
import json
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
    started = time.perf_counter()
    result = train_run(spec, run_dir)
    return {**result.summary, "wall_s": time.perf_counter() - started}, run_dir


# --- conv autoencoder ------------------------------------------------------------------------------


def bench_ae(args) -> dict:
    summary, _ = dlforge_run("configs/ae/mnist5k-conv.yaml", args.out, "ae-conv", args.overrides("ae"))
    bce = summary["eval/bce_per_pixel"]
    return {"test_bce_per_pixel": bce, "mse_per_pixel": summary["eval/mse_per_pixel"], "goal": "<= 0.09",
            "met": bce <= 0.09, "wall_s": summary["wall_s"]}  # fmt: skip


# --- MLP GAN on digits -------------------------------------------------------------------------------


def bench_gan(args) -> dict:
    summary, _ = dlforge_run("configs/gan/digits.yaml", args.out, "gan-digits", args.overrides("gan"))
    shares = [summary[f"eval/class_{c}"] for c in range(10)]
    present = int(summary["eval/classes_present"])
    return {"classes_present": present, "class_shares": shares, "fld": summary["eval/fld"], "goal": "10 of 10",
            "met": present == 10, "wall_s": summary["wall_s"]}  # fmt: skip


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
            "goal": "dlforge >= reference", "met": elbo >= reference_elbo, "dlforge_wall_s": summary["wall_s"],
            "reference_train_s": reference_time}  # fmt: skip


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
    from generative import dcgan
    from generative.classifier import fit_judge
    from generative.data import load_images
    from generative.metrics import FrechetLeNetDistance, class_histogram
    from launch.config import load_config

    overrides = args.overrides("dcgan")
    config = load_config(REPO / "configs/dcgan/mnist5k.yaml", overrides).config
    summary, run_dir = dlforge_run("configs/dcgan/mnist5k.yaml", args.out, "dcgan", overrides)

    # the reference: same networks, init, optimiser, batch, steps and data split; its own plain loop
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
    reference_ips = config.total_steps * config.batch_size / (time.perf_counter() - started)

    # both scored by the same judge (fit_judge caches the one dlforge's run trained) on 1,000 samples each
    judge = fit_judge(data, steps=config.judge_steps, seed=config.seed, device=torch.device("cpu"))
    fld = FrechetLeNetDistance(judge, torch.from_numpy(data.x_test))
    netG.eval()
    with torch.no_grad():
        samples = ((netG(torch.randn(config.eval_samples, config.latent_dim, 1, 1)) + 1) / 2).clamp(0, 1)
    reference_fld = fld(samples)
    reference_shares = class_histogram(judge.predict(samples), 10).tolist()
    shares = [summary[f"eval/class_{c}"] for c in range(10)]

    interleaved = interleaved_throughput(config, dcgan, rounds=10, steps=50)
    ratio = summary["charts/images_per_s"] / reference_ips
    return {
        "dlforge_fld": summary["eval/fld"], "reference_fld": reference_fld,
        "dlforge_class_shares": shares, "reference_class_shares": reference_shares,
        "dlforge_images_per_s": summary["charts/images_per_s"], "reference_images_per_s": reference_ips,
        "images_per_s_ratio": ratio, "interleaved_ratio": interleaved,
        "fld_met": summary["eval/fld"] <= reference_fld,
        "coverage_met": all(0.05 <= s <= 0.15 for s in shares),
        "speed_met": ratio >= 1.0, "dlforge_wall_s": summary["wall_s"], "run_dir": str(run_dir),
    }  # fmt: skip


def interleaved_throughput(config, dcgan, *, rounds: int, steps: int) -> float:
    """dlforge's step vs the reference step, alternating bursts so both see the same machine load."""
    from generative.gan import discriminator_loss, generator_loss

    torch.manual_seed(0)
    x = torch.rand(4000, 1, 28, 28) * 2 - 1
    G, D = dcgan.build_networks(config, (1, 28, 28))
    optG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    netG, netD = reference_dcgan(config.latent_dim, config.ngf, config.ndf)
    refG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    refD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def ours():  # gan.train_adversarial's step body
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


BENCHES = {"ae": bench_ae, "gan": bench_gan, "vae": bench_vae, "dcgan": bench_dcgan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", help=f"any of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dlforge-bench"), help="scratch folder for runs")
    parser.add_argument("--steps", type=int, default=None, help="override every config's total_steps")
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
        started = time.perf_counter()
        results[name] = BENCHES[name](args)
        results[name]["bench_wall_s"] = time.perf_counter() - started
        print(name, json.dumps(results[name], default=float), flush=True)
    (args.out / "generative.json").write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
