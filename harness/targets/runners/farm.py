"""Run firmware on a board in a labgrid farm: `--runner labgrid --place NAME`.

labgrid (https://labgrid.readthedocs.io) shares a lab's boards through a
coordinator: exporters publish what is wired to their host (a Nucleo's
ST-LINK virtual COM port, its debug probe) and a *place* groups the
resources of one board. This runner

* acquires the place through the coordinator (`coordinator=`, else the
  environment YAML's `coordinator_address` (`LG_ENV`), else
  `LG_COORDINATOR`, else labgrid's default 127.0.0.1:20408), after checking
  that it exists, is free and has every resource the board file's
  `[runners.labgrid]` table lists (`resources`);
* flashes the image as the table says (`flash`): "openocd" through labgrid's
  OpenOCDDriver on the place's NetworkUSBDebugger; "local" with our own
  flash tools (harness.targets.flash) for a place whose probe is plugged
  into this host; "none" when the place's board already runs the image (a
  QEMU behind a loopback farm, or `--no-flash`): nothing is flashed, and
  READY must still name the board;
* opens the console through labgrid's SerialDriver and speaks our framed
  protocol over its pyserial port (SerialLink: the serial runner's retries,
  HELLO until READY, pass repeats);
* releases the place in `stop()`, which `Runner.run` calls on every way out
  (done, an error, a timeout row, the caller closing the generator,
  Ctrl-C). A worker killed outright (a sweep's Ctrl-C kills its workers)
  cannot run its own clean-up: a small guard process, started with the
  acquisition, releases the place when its owner dies without doing so
  (only if the place is still acquired by this host and user).

The image is the one the table's `image` names (`serial` on real boards:
the silicon image; `qemu` on the emulated parts, for the loopback farm the
tests build from QEMU's UART exported as a NetworkSerialPort), so counts
are those of that image's runner (`dwt` cycles, `qemu-icount`
instructions).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

from harness.errors import FusebenchError
from harness.targets.boards import Board, BoardTable
from harness.targets.protocol import Session
from harness.targets.runners.base import register_runner
from harness.targets.runners.serial import SerialLink, SerialRunner

MISSING_LABGRID = "the labgrid runner needs labgrid: pip install -e '.[lab]'"
DEFAULT_COORDINATOR = "127.0.0.1:20408"      # labgrid's own default
FLASH_MODES = ("openocd", "local", "none")
SERIAL_RESOURCES = ("NetworkSerialPort", "SerialPort")    # what labgrid's SerialDriver binds to
FLASH_RESOURCES = {"openocd": "NetworkUSBDebugger"}
_RESOURCE_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")
DEFAULT_OPENOCD_INTERFACE = "interface/stlink.cfg"


def _need_labgrid() -> None:
    # gRPC's fork handlers only log a warning for every emulator or tool we start.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    try:
        import labgrid.remote.client  # noqa: F401
    except ImportError:
        raise FusebenchError(MISSING_LABGRID) from None


@contextlib.contextmanager
def _quiet_labgrid():
    """labgrid logs an unreachable coordinator on the root logger: our error says it once."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


class FarmPlace:
    """One labgrid place: the coordinator session, the place and, once
    acquired, its labgrid Target (drivers: `driver`). Every coordinator call
    is bounded by `timeout_s`; `release` is safe to call at any time."""

    def __init__(self, name: Optional[str], coordinator: Optional[str] = None,
                 env_file: Optional[str] = None, timeout_s: float = 10.0):
        _need_labgrid()
        self.env = None
        if env_file:
            from labgrid import Environment
            try:
                self.env = Environment(config_file=str(env_file))
            except Exception as exc:   # labgrid raises its own, YAML's, OSError
                raise FusebenchError(f"labgrid environment {env_file}: {exc}") from None
        address = coordinator
        if not address and self.env is not None:
            address = self.env.config.get_option("coordinator_address", None)
        self.coordinator = address or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR
        self.name = name
        self.timeout_s = timeout_s
        self.session = None
        self.place = None
        self.target = None
        self.acquired = False
        self._guard: Optional[subprocess.Popen] = None

    # -- the coordinator ----------------------------------------------------------------------

    def _call(self, coroutine, what: str):
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coroutine, self.timeout_s))
        except asyncio.TimeoutError:
            raise FusebenchError(f"labgrid coordinator {self.coordinator} did not answer within "
                                 f"{self.timeout_s:g} s ({what})") from None

    def connect(self) -> None:
        from labgrid.remote.client import ClientSession, Error, ensure_event_loop
        from labgrid.util.proxy import proxymanager

        if self.session is not None:
            return
        self.loop = ensure_event_loop()
        address = proxymanager.get_grpc_address(self.coordinator, default_port=20408)
        session = ClientSession(address, self.loop, env=self.env)
        try:
            with _quiet_labgrid():
                self._call(session.start(), "connecting")
        except (Error, FusebenchError, OSError) as exc:
            self._close_session(session)
            raise FusebenchError(f"cannot reach the labgrid coordinator at {self.coordinator} "
                                 f"({exc}): is labgrid-coordinator running there? (set LG_COORDINATOR "
                                 f"to its host:port)") from None
        self.session = session
        if not self.name:
            names = session.get_place_names_from_env() if self.env is not None else []
            if not names:
                self.close()
                raise FusebenchError("the labgrid runner needs a place: --place NAME, LG_PLACE, "
                                     "or a RemotePlace in the LG_ENV environment")
            self.name = names[0]

    @property
    def user(self) -> str:
        return f"{self.session.gethostname()}/{self.session.getuser()}"

    def check(self, resources: list[str], want_free: bool = True) -> None:
        """The place exists, is free (`want_free`) and matches every resource
        class in `resources`, each available."""
        from labgrid.remote.client import Error

        self.connect()
        try:
            self.place = self.session.get_place(self.name)
        except Error:
            known = ", ".join(sorted(self.session.places)) or "none"
            raise FusebenchError(f"labgrid place {self.name!r} does not exist on the coordinator "
                                 f"{self.coordinator} (places: {known}); create it with "
                                 f"`labgrid-client -p {self.name} create` and add-match its resources") from None
        if want_free and self.place.acquired:
            whose = ("you (release it with `labgrid-client -p "
                     f"{self.place.name} release`)" if self.place.acquired == self.user else self.place.acquired)
            raise FusebenchError(f"labgrid place {self.place.name} is acquired by {whose}")
        matched = {}
        for exporter, groups in self.session.resources.items():
            for group, entries in groups.items():
                for resource_name, entry in entries.items():
                    if self.place.getmatch((exporter, group, entry.cls, resource_name)) is not None:
                        matched.setdefault(entry.cls, []).append(entry)
        for cls in resources:
            if cls not in matched:
                has = ", ".join(sorted(matched)) or "no resources"
                raise FusebenchError(f"labgrid place {self.place.name} has no {cls} resource (it has: {has})")
            if not any(entry.avail for entry in matched[cls]):
                raise FusebenchError(f"labgrid place {self.place.name}: its {cls} is not available "
                                     "(is its exporter running, the device plugged in?)")

    def acquire(self, resources: list[str]) -> None:
        """Acquire the place and set up its labgrid Target."""
        import grpc
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        self.check(resources)
        self._guard = _start_guard(self.coordinator, self.place.name, self.user)
        self.acquired = True           # from here on, release: the request may go through, whatever happens
        try:
            self._call(self.session.stub.AcquirePlace(pb2.AcquirePlaceRequest(placename=self.place.name)),
                       "acquiring the place")
        except grpc.aio.AioRpcError as exc:
            raise FusebenchError(f"cannot acquire labgrid place {self.place.name}: {exc.details()}") from None
        self._call(self.session.sync_with_coordinator(), "acquiring the place")
        self.place = self.session.get_place(self.place.name)
        self.target = self._make_target()

    def _make_target(self):
        from labgrid import Target
        from labgrid.resource.remote import RemotePlace, RemotePlaceManager

        manager = RemotePlaceManager.get()
        manager.session, manager.loop = self.session, self.loop
        target = None
        if self.env is not None:
            from labgrid.remote.client import find_role_by_place
            role = find_role_by_place(self.env.config.get_targets(), self.place.name)
            target = self.env.get_target(role) if role else None
        if target is None:
            target = Target(self.place.name, env=self.env)
            RemotePlace(target, name=self.place.name)
        return target

    def driver(self, cls_name: str, **kwargs):
        """The target's active driver of class `cls_name`: the environment's,
        else a new one made with `kwargs`."""
        from labgrid.exceptions import NoDriverFoundError
        from labgrid.factory import target_factory

        try:
            return self.target.get_driver(cls_name)
        except NoDriverFoundError:
            driver = target_factory.class_from_string(cls_name)(self.target, name=None, **kwargs)
            self.target.activate(driver)
            return driver

    def release(self) -> None:
        """Release the place (if this session acquired it) and end the session."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        try:
            if self.target is not None:
                with contextlib.suppress(Exception):
                    self.target.deactivate_all_drivers()
                _forget_target(self.target)
                self.target = None
            if self.acquired and self.session is not None:
                # `fromuser`: only while it is ours (a no-op if it never was, or someone took it since)
                try:
                    self._call(self.session.stub.ReleasePlace(
                        pb2.ReleasePlaceRequest(placename=self.place.name, fromuser=self.user)),
                        "releasing the place")
                    self.acquired = False
                except Exception:
                    pass                   # the guard tries again
        finally:
            self._stop_guard(released=not self.acquired)
            self.acquired = False
            self.close()

    def close(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            self._close_session(session)

    def _close_session(self, session) -> None:
        with _quiet_labgrid(), contextlib.suppress(Exception):
            self.loop.run_until_complete(asyncio.wait_for(session.stop(), 5))
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(asyncio.wait_for(session.close(), 5))

    def _stop_guard(self, released: bool) -> None:
        guard, self._guard = self._guard, None
        if guard is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if released:
                guard.stdin.write(b"released\n")
            guard.stdin.close()
        if released:
            with contextlib.suppress(subprocess.TimeoutExpired):
                guard.wait(timeout=2)
        # not released: the guard releases it on its own, in the background

    def __enter__(self) -> "FarmPlace":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _forget_target(target) -> None:
    """Drop the target's resources from labgrid's process-wide RemotePlaceManager."""
    from labgrid.resource.remote import RemotePlaceManager

    manager = RemotePlaceManager.get()
    mine = set(map(id, target.resources))
    manager.resources = [r for r in manager.resources if id(r) not in mine and r.target is not target]
    manager.unmanaged_resources = [r for r in manager.unmanaged_resources if r.target is not target]


# -- the guard: releases a place whose owner died without releasing it ----------------------

def _start_guard(coordinator: str, place: str, user: str) -> Optional[subprocess.Popen]:
    try:
        return subprocess.Popen([sys.executable, "-m", __name__, "guard", coordinator, place, user],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=str(Path(__file__).resolve().parents[3]),   # where `harness` imports from
                                start_new_session=True)       # a Ctrl-C at the terminal spares it
    except OSError:
        return None


def _guard(coordinator: str, place: str, user: str) -> int:
    """Wait for the owner to say `released` or to die (end of stdin); when it
    died, release the place if it is still acquired by `user`."""
    if sys.stdin.buffer.read().strip() == b"released":
        return 0
    import grpc  # noqa: F401
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

    farm = FarmPlace(place, coordinator, timeout_s=10)
    try:
        farm.connect()
        farm._call(farm.session.stub.ReleasePlace(pb2.ReleasePlaceRequest(placename=place, fromuser=user)),
                   "releasing the place")
    except Exception:
        return 1
    finally:
        farm.close()
    return 0


# -- the runner -------------------------------------------------------------------------------

@register_runner
class LabgridRunner(SerialRunner):
    """A board (or an emulator) in a labgrid place, over labgrid's drivers."""

    kind = "labgrid"
    silicon_image = False          # the image is the one the table's `image` names (firmware_dir)
    parallel_jobs = False          # one place, one board: one firmware at a time
    preference = None              # only when asked for (or by --place)
    chosen_by_option = "place"
    reason_on_link_closed = "the labgrid console closed: {}"

    def __init__(self, board: Board, place: Optional[str] = None, coordinator: Optional[str] = None,
                 env_file: Optional[str] = None, flash: bool = True, flash_tool: Optional[str] = None,
                 probe: Optional[str] = None, coordinator_timeout_s: float = 10.0, **kwargs):
        table = board.runner(self.kind)
        super().__init__(board, None, firmware_runner=table.image_kind, **kwargs)
        self.table = table
        self.place_name = place or os.environ.get("LG_PLACE") or None
        self.coordinator = coordinator
        self.env_file = env_file or os.environ.get("LG_ENV") or None
        self.flash_mode = str(table.option("flash", "none")) if flash else "none"
        self.flash_tool = flash_tool
        self.probe = probe
        self.coordinator_timeout_s = coordinator_timeout_s
        self.farm: Optional[FarmPlace] = None
        if not self.place_name and not self.env_file:
            raise FusebenchError("the labgrid runner needs a place: --place NAME or LG_PLACE "
                                 "(or an environment YAML in LG_ENV)")

    @classmethod
    def from_options(cls, board: Board, place: Optional[str] = None, flash: bool = True,
                     flash_tool: Optional[str] = None, probe: Optional[str] = None,
                     coordinator: Optional[str] = None, **_) -> "LabgridRunner":
        return cls(board, place=place, coordinator=coordinator, flash=flash, flash_tool=flash_tool,
                   probe=probe)

    @classmethod
    def check_setup(cls, board: Board, **options) -> None:
        """Before any build: labgrid is there, the coordinator answers, the
        place exists, is free and has the resources (it is not acquired yet)."""
        runner = cls.from_options(board, **options)
        runner.check_tools()
        with runner._farm() as farm:
            farm.check(runner.resources)

    @classmethod
    def check_table(cls, table: BoardTable) -> None:
        values = table.values
        if "image" not in values:
            raise table.fail(f"{table.ctx}image must name the runner table whose image the place's "
                             f"board runs (\"serial\" on real boards, \"qemu\" behind a loopback farm)")
        resources = values.get("resources")
        if (not isinstance(resources, list) or not resources
                or not all(isinstance(r, str) and _RESOURCE_NAME.fullmatch(r) for r in resources)):
            raise table.fail(f"{table.ctx}resources must be a list of labgrid resource classes "
                             f"like [\"NetworkSerialPort\"], not {resources!r}")
        if not set(resources) & set(SERIAL_RESOURCES):
            raise table.fail(f"{table.ctx}resources must include a serial port for the console "
                             f"({' or '.join(SERIAL_RESOURCES)})")
        mode = values.get("flash", "none")
        if mode not in FLASH_MODES:
            raise table.fail(f"{table.ctx}flash must be one of {', '.join(FLASH_MODES)}, not {mode!r}")
        if mode in FLASH_RESOURCES and FLASH_RESOURCES[mode] not in resources:
            raise table.fail(f"{table.ctx}flash = {mode!r} needs {FLASH_RESOURCES[mode]} in resources")
        if mode == "openocd":
            table.need("openocd_target", str)
            if "openocd_interface" in values:
                table.need("openocd_interface", str)

    @property
    def resources(self) -> list[str]:
        needed = list(self.table.option("resources", ()))
        if self.flash_mode == "none":        # nothing to flash: the flash resource may be absent
            needed = [r for r in needed if r not in FLASH_RESOURCES.values()]
        return needed

    @property
    def where(self) -> str:
        return f"labgrid place {self.place_name or '(from LG_ENV)'}"

    def check_tools(self) -> None:
        _need_labgrid()

    def _farm(self) -> FarmPlace:
        return FarmPlace(self.place_name, self.coordinator, self.env_file, self.coordinator_timeout_s)

    # -- the session ------------------------------------------------------------------------

    def start(self, binary: Path) -> Session:
        try:
            if self.farm is None:
                self.farm = self._farm()
                self.farm.acquire(self.resources)
                self.place_name = self.farm.place.name
            self._flash(binary)
            self.link = self._open_console()
            return self._handshake(binary, after="opening the labgrid console")
        except BaseException:
            self.stop()
            raise

    def _open_console(self) -> SerialLink:
        try:
            driver = self.farm.driver("SerialDriver")
        except Exception as exc:   # pyserial's, labgrid's (no resource bound), OSError
            raise FusebenchError(f"labgrid place {self.place_name}: cannot open its console: {exc}") from None
        driver.serial.timeout = 0.05          # what SerialLink polls with
        driver.serial.write_timeout = 10
        self.port = driver.serial.port
        return SerialLink(driver.serial)

    def _flash(self, binary: Path) -> None:
        if self.flash_mode == "openocd":
            target = self.table.option("openocd_target")
            interface = self.table.option("openocd_interface", DEFAULT_OPENOCD_INTERFACE)
            try:
                driver = self.farm.driver(
                    "OpenOCDDriver", config=[interface, target],
                    load_commands=["init", "reset init", "program {filename} verify", "reset run", "shutdown"])
                driver.load(str(binary))
            except Exception as exc:
                raise FusebenchError(f"labgrid place {self.place_name}: OpenOCD could not flash "
                                     f"{binary}: {exc}") from None
            self._reset = lambda: driver.execute(["init", "reset run", "shutdown"])
        elif self.flash_mode == "local":
            from harness.targets.flash import Flasher

            flasher = Flasher.for_board(self.board, tool=self.flash_tool, probe=self.probe)
            flasher.flash(binary)
            self._reset = getattr(flasher, "reset", None)
        # "none": the place's board already runs the image (READY still names the board)

    def stop(self) -> None:
        try:
            super().stop()                    # closes the console's port
        finally:
            farm, self.farm = self.farm, None
            if farm is not None:
                farm.release()

    def failure_detail(self, error) -> dict:
        return dict(super().failure_detail(error), place=self.place_name)


if __name__ == "__main__":          # the guard process (see _start_guard)
    if len(sys.argv) == 5 and sys.argv[1] == "guard":
        sys.exit(_guard(*sys.argv[2:]))
    sys.exit(f"usage: python -m {__name__} guard COORDINATOR PLACE HOST/USER")
