"""The GPU lease that keeps a training and engine calls off one device at the same time."""
import threading
import time

from wow_core.engines import DeviceLease, device_lease


def test_training_waits_for_calls_in_flight_and_calls_wait_for_the_training():
    lease, events = DeviceLease(), []
    call_started, training_asked = threading.Event(), threading.Event()

    def call(name, hold):
        with lease.shared():
            events.append(f"{name} in")
            call_started.set()
            time.sleep(hold)
            events.append(f"{name} out")

    def training():
        training_asked.set()
        with lease.exclusive():
            events.append("train in")
            time.sleep(0.2)
            events.append("train out")

    first = threading.Thread(target=call, args=("a", 0.4))
    first.start()
    call_started.wait()
    trainer = threading.Thread(target=training)
    trainer.start()
    training_asked.wait()
    time.sleep(0.05)
    # A call that starts while the training waits still gets the device (engine work first).
    second = threading.Thread(target=call, args=("b", 0.1))
    second.start()
    second.join()
    first.join()
    trainer.join()
    assert events.index("train in") > max(events.index("a out"), events.index("b out"))
    # While the training holds the device, a new call waits for it.
    events.clear()
    trainer = threading.Thread(target=training)
    trainer.start()
    while "train in" not in events:
        time.sleep(0.01)
    late = threading.Thread(target=call, args=("c", 0.0))
    late.start()
    late.join()
    trainer.join()
    assert events == ["train in", "train out", "c in", "c out"]


def test_cuda_means_the_first_gpu():
    assert device_lease("cuda") is device_lease("cuda:0") and device_lease("cuda:1") is not device_lease("cuda")
