"""`robolearn serve`: run the control daemon (or, with --policy-server, the remote policy server)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from robolearn.errors import UserError

if TYPE_CHECKING:  # kept out of the import: `robolearn --help` stays fast
    import numpy as np

    from robolearn.goal import Goal, GoalConfig

EXAMPLES = """examples:
  robolearn serve --robot real_robot/sim_panda.toml --checkpoint policies/checkpoints/lift_dp
  robolearn serve --robot real_robot/sim_panda.toml --checkpoint DIR --mode ensemble --duration 60
  robolearn serve --policy-server --checkpoint DIR --bind tcp://0.0.0.0:5555 --token $ROBOLEARN_TOKEN   # on the GPU box
  robolearn serve --robot real_robot/sim_panda.toml --remote tcp://gpu-box:5555 --token $ROBOLEARN_TOKEN
  robolearn serve --robot real_robot/sim_panda.toml --checkpoint DIR --instruction "lift the red cube"
  robolearn serve --robot real_robot/sim_panda.toml --checkpoint DIR --goal-image goal.png --goal-camera agentview_image
e-stop: `echo estop | nc 127.0.0.1 5599` (control_socket in the robot config), or `kill -USR1 <pid>`;
re-arm: `echo arm | nc 127.0.0.1 5599`; new instruction: `echo goal stack the cubes | nc 127.0.0.1 5599`.
SIGTERM / Ctrl-C: stop the arm and exit."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="run the on-robot control daemon (or a remote policy server)",
        description="Fixed-rate control loop with asynchronous inference, chunk scheduling and an always-on "
                    "safety layer, driving the arm named in a robot config.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robot", help="robot config TOML (real_robot/<robot>.toml)")
    p.add_argument("--checkpoint", help="policy checkpoint directory (model.safetensors + config.json + stats.json)")
    p.add_argument("--remote", help="policy server address tcp://HOST:PORT instead of --checkpoint")
    p.add_argument("--token", default=os.environ.get("ROBOLEARN_TOKEN"), help="shared token (env ROBOLEARN_TOKEN)")
    p.add_argument("--mode", choices=["receding", "ensemble", "rtc"], help="chunk scheduling (overrides the config)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (cuda when present)")
    p.add_argument("--compile", action="store_true", help="torch.compile the policy (CUDA)")
    p.add_argument("--inference", choices=["thread", "process"], default="thread",
                   help="run the policy in a worker thread or in its own process (loopback policy server)")
    g = p.add_argument_group("goal", "for a policy trained with goals; checked against it before the arm moves")
    g.add_argument("--instruction", help="language instruction (the policy embeds it with its own text encoder)")
    g.add_argument("--goal-image", metavar="PNG", help="goal image for one camera, same size as its observations")
    g.add_argument("--goal-camera", metavar="KEY", help="camera obs key of --goal-image (default: the policy's first)")
    g.add_argument("--goal-state", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="goal low-dim values for one obs key (repeatable), e.g. object=0.1,0.0,0.83")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGTERM)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. control_hz=200 scheduling.action_dt=0.05")
    p.add_argument("--dry-run", action="store_true",
                   help="run the whole loop (state, inference, IK, safety filter) with the arm held: nothing is sent")
    p.add_argument("--policy-server", action="store_true", help="serve --checkpoint on --bind instead")
    p.add_argument("--bind", default="tcp://127.0.0.1:5555", help="policy server address (loopback by default)")
    p.set_defaults(func=run)

    r = subparsers.add_parser("robot", help="robot utilities: `robot check` before serving an arm",
                              description="Robot utilities.")
    rsub = r.add_subparsers(dest="robot_command", metavar="SUBCOMMAND", required=True)
    c = rsub.add_parser("check", help="limits sanity, connection, state, a guarded motion and an e-stop test",
                        description="Check an arm before `robolearn serve`: limits consistent and inside the "
                                    "vendor datasheet, driver ping and state read, a small guarded motion of the "
                                    "base joint, an e-stop and re-arm; prints a pass/fail table (exit 1 on a fail).",
                        epilog="example:\n  robolearn robot check --robot real_robot/franka_fr3.toml",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--robot", required=True, help="robot config TOML (real_robot/<robot>.toml)")
    c.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as for serve")
    c.add_argument("--track-tol", type=float, default=0.05,
                   help="rad the guarded motion may end short of its targets (default 0.05: half its amplitude)")
    c.set_defaults(func=robot_check)


def robot_check(args) -> int:
    from robolearn.real_robot.check import run_check
    from robolearn.real_robot.config import load_robot_config

    cfg = load_robot_config(args.robot, _parse_overrides(args.set))
    return 0 if run_check(cfg, track_tol=args.track_tol) else 1


def _parse_overrides(items: list[str]) -> dict:
    import tomllib

    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
    return out


class GoalArgs:
    """The goal flags, read and parsed before any policy loads; `resolve` keys and checks them against it."""

    def __init__(self, args):
        self.instruction: str | None = args.instruction or None
        self.camera: str | None = args.goal_camera
        if self.camera and not args.goal_image:
            raise UserError("--goal-camera needs --goal-image")
        from robolearn.goal import read_goal_image

        self.image = read_goal_image(args.goal_image, self.camera or "") if args.goal_image else None
        self.state = dict(_parse_goal_state(item) for item in args.goal_state)

    @property
    def given(self) -> bool:
        return bool(self.instruction or self.image is not None or self.state)

    def resolve(self, cfg: GoalConfig, where: str) -> Goal | None:
        """The goal for a policy with goal config `cfg`; UserError (one line) for anything it cannot take."""
        from robolearn.goal import Goal, check_goal

        if not self.given:
            return None
        images = {}
        if self.image is not None:
            images[self.camera or (cfg.image_keys[0] if cfg.image_keys else "image")] = self.image
        goal = Goal(self.instruction, images, self.state)
        check_goal(goal, cfg, where=where)
        return goal


def _parse_goal_state(item: str) -> tuple[str, np.ndarray]:
    import numpy as np

    key, sep, raw = item.partition("=")
    try:
        values = [float(v) for v in raw.split(",")] if sep and key else None
    except ValueError:
        values = None
    if not values:
        raise UserError(f"--goal-state {item!r}: expected KEY=V1,V2,... (numbers)")
    return key.strip(), np.asarray(values, dtype=np.float32)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available")
    return name


def run(args) -> int:
    import torch

    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 2) - 1)))
    device = _device(args.device)
    if args.policy_server:
        if not args.checkpoint:
            raise UserError("--policy-server needs --checkpoint")
        if args.instruction or args.goal_image or args.goal_state:
            raise UserError("--policy-server takes no goal: the daemon sends it with every request")
        from robolearn.real_robot.checkpoint import load_checkpoint
        from robolearn.real_robot.remote import PolicyServer

        server = PolicyServer(load_checkpoint(args.checkpoint, device), args.bind, args.token, device)
        print(f"policy server on {server.address}")
        server.serve()
        return 0
    if not args.robot:
        raise UserError("--robot is required (a robot config TOML under real_robot/)")
    if bool(args.checkpoint) == bool(args.remote):
        raise UserError("give exactly one of --checkpoint DIR or --remote tcp://HOST:PORT")
    return serve(args, device)


def serve(args, device: str) -> int:
    import torch

    from robolearn.real_robot.checkpoint import goal_config, load_checkpoint
    from robolearn.real_robot.config import load_robot_config
    from robolearn.real_robot.control import ControlServer, install_signal_handlers
    from robolearn.real_robot.daemon import Daemon
    from robolearn.real_robot.driver import DriverError, make_driver
    from robolearn.real_robot.events import EventLog

    overrides = _parse_overrides(args.set)
    if args.mode:
        overrides["scheduling.mode"] = args.mode
    cfg = load_robot_config(args.robot, overrides)
    from robolearn.real_robot.check import DryRunDriver, datasheet_problems

    problems = datasheet_problems(cfg)  # limits beyond what the arm can do: refused before anything starts
    if problems:
        raise UserError(f"{cfg.source}: {problems[0]}")
    goal_args = GoalArgs(args)
    supervisor = None
    if args.remote:
        from robolearn.real_robot.remote import RemotePolicy

        policy = RemotePolicy(args.remote, args.token, timeout_s=max(1.0, 2 * cfg.safety.inference_deadline_s))
    elif args.inference == "process":  # supervised: restarted up to [safety].policy_restarts times, then stop
        from robolearn.real_robot.remote import spawn_local_server
        from robolearn.real_robot.worker import PolicyProcess

        supervisor = PolicyProcess(lambda: spawn_local_server(args.checkpoint, device,
                                                              timeout_s=2 * cfg.safety.inference_deadline_s),
                                   cfg.safety.policy_restarts)
        policy = supervisor.policy
    else:
        policy = load_checkpoint(args.checkpoint, device)
    try:  # before the arm is touched: a goal this policy cannot take is one line, nothing moves
        goal = goal_args.resolve(goal_config(policy), where=args.checkpoint or args.remote)
    except UserError:
        if supervisor is not None:
            supervisor.close()
        raise
    if args.compile and device.startswith("cuda") and args.inference == "thread" and not args.remote:
        policy = torch.compile(policy)
    driver = make_driver(cfg.driver, cfg)
    if args.dry_run:
        driver = DryRunDriver(driver)
    try:
        daemon = Daemon(cfg, driver, policy, events=EventLog(cfg.event_log), device=device, goal=goal,
                        supervisor=supervisor)
    except ValueError as exc:
        raise UserError(f"{cfg.source}: {exc}") from None
    control = ControlServer(cfg.control_socket, daemon) if cfg.control_socket else None
    install_signal_handlers(daemon)
    try:
        daemon.start()
    except ValueError as exc:
        daemon.shutdown()
        raise UserError(f"{args.checkpoint or args.remote}: {exc}") from None
    except DriverError as exc:  # the arm does not answer (address, power, FCI): one line, nothing moved
        daemon.shutdown()
        raise UserError(f"{cfg.source}: {exc}") from None
    print(f"serving {cfg.name} at {cfg.control_hz:g} Hz, mode {cfg.scheduling.mode}, goal {_describe(goal)}, "
          f"events -> {cfg.event_log}")
    stats = daemon.run(duration=args.duration)
    if control:
        control.close()
    n = len(stats.lateness)
    print(f"stopped after {n} ticks, {stats.deadline_misses} deadline misses")
    if args.dry_run:
        print(f"dry run: {driver.would_send} commands computed, none sent (the arm was held)")
    if daemon.fatal:  # the arm is already stopped; one line, non-zero exit
        raise UserError(daemon.fatal)
    return 0


def _describe(goal: Goal | None) -> str:
    if goal is None:
        return "none"
    parts = [f"instruction {goal.instruction!r}"] if goal.instruction else []
    parts += [f"image {k}" for k in goal.images] + [f"state {k}" for k in goal.state]
    return ", ".join(parts)
