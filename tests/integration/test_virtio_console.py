"""--console virtio: the stdio console is a virtio-console PCI device (the
guest's hvc0). The test guest guests/virtio_console.c greets on its
transmitq and echoes each line it receives with its length, so lost input
would show."""
import pexpect

from conftest import GUEST_OK


def test_stdio_console_on_virtio(kite, guests, engine):
    child = pexpect.spawn(kite, ["run", "--engine", engine, "--debug-exit", "--console",
                                 "virtio", "--kernel", str(guests / "virtio_console.elf")],
                          encoding="utf-8", codec_errors="replace", timeout=60)
    try:
        child.expect_exact("hello from hvc0")
        child.send("ping\r")
        child.expect_exact("echo: ping (4)")
        # far more than the guest's 8 x 64-byte receive buffers: the device
        # pauses host input while the guest has none posted, nothing is lost
        child.send("y" * 5000 + "\r")
        child.expect_exact("echo: " + "y" * 127 + " (5000)")
        child.send("quit\r")
        child.expect_exact("bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == GUEST_OK, child.before
