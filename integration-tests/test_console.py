"""The web console in a real browser: headless Chromium (Debian's, with its chromedriver,
driven by Selenium) against a real cluster. It loads every page, creates a topic,
produces a record from the page, sees a kafka-python record appear in live mode, watches a
group's lag fall to 0 and resets its offsets. Screenshots are saved next to the test's
logs; any error in the page's console fails the test."""
import json
import shutil
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from harness import wait_until

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


@pytest.fixture
def browser(log_dir, monkeypatch):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "install Debian's chromium and chromium-driver (scripts/install-deps.sh does)"
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium look for drivers online
    opts = Options()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(30)
    driver.shots = log_dir
    yield driver
    driver.quit()


def shot(driver, name):
    driver.save_screenshot(str(driver.shots / f"{name}.png"))


def console_errors(driver, allowed=()):
    """SEVERE entries of the page's console, less the deliberate ones in `allowed`."""
    return [e for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def text_of(driver, css):
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def wait_text(driver, css, predicate, what, timeout=20):
    return wait_until(lambda: predicate(text_of(driver, css)), timeout=timeout, interval=0.1, what=what)


def fill(driver, form, name, value):
    el = driver.find_element(By.CSS_SELECTOR, f"{form} [name={name}]")
    el.clear()
    el.send_keys(value)


def test_the_console_in_a_browser(cluster, browser):
    b = browser
    base = cluster.http
    # Overview: ZooKeeper, controller, brokers, partition health.
    b.get(base + "/")
    wait_text(b, "#zk-status", lambda t: t == "connected", "the overview to show ZooKeeper connected")
    wait_text(b, "#broker-count", lambda t: t == "1", "one broker on the overview")
    wait_text(b, "#controller", lambda t: "epoch" in t, "the active controller and its epoch")
    assert "127.0.0.1" in text_of(b, "#brokers")
    assert "Loading the console" not in b.page_source, "the placeholder stays only until the app renders"
    shot(b, "overview")
    b.get(base + "/#/brokers")
    wait_text(b, "#brokers", lambda t: "127.0.0.1" in t, "the brokers page")
    shot(b, "brokers")

    # Topics: create one from the page.
    b.get(base + "/#/topics")
    fill(b, "#create-topic", "name", "from-console")
    fill(b, "#create-topic", "partitions", "2")
    fill(b, "#create-topic", "config", "retention.ms=86400000")
    b.find_element(By.CSS_SELECTOR, "#create-topic button[type=submit]").click()
    wait_text(b, "#topic-message", lambda t: "from-console created" in t, "the topic to be created")
    cluster.wait_topic_led("from-console", partitions=2)
    wait_until(lambda: b.find_elements(By.CSS_SELECTOR, "tr[data-topic=from-console]"), what="the new topic's row")
    shot(b, "topics")

    # Produce a record from the page; kafka-python reads it with its key and header.
    b.get(base + "/#/topics/from-console/produce")
    fill(b, "#produce", "key", "device-7")
    fill(b, "#produce", "value", '{"temp": 21.5}')
    fill(b, "#produce", "headers", "source=console")
    fill(b, "#produce", "partition", "1")
    b.find_element(By.CSS_SELECTOR, "#produce button[type=submit]").click()
    wait_text(b, "#produce-result", lambda t: "partition 1 at offset 0" in t, "the produce result")
    shot(b, "produce")
    reader = KafkaConsumer("from-console", bootstrap_servers=cluster.bootstrap(), auto_offset_reset="earliest",
                           consumer_timeout_ms=15000)
    m = next(iter(reader))
    reader.close()
    assert (m.key, m.value, m.partition, dict(m.headers)) == (b"device-7", b'{"temp": 21.5}', 1, {"source": b"console"})

    # Partitions and configs tabs.
    b.get(base + "/#/topics/from-console/partitions")
    wait_text(b, "#partitions", lambda t: t.count("\n") >= 2, "the partitions table")
    shot(b, "partitions")
    b.get(base + "/#/topics/from-console/configs")
    wait_until(lambda: "retention.ms" in b.page_source and "86400000" in b.page_source, what="the topic's configs")
    shot(b, "configs")

    # Browse from the beginning, with a filter.
    b.get(base + "/#/topics/from-console/messages")
    wait_until(lambda: b.find_elements(By.CSS_SELECTOR, "#load"), what="the message browser")
    b.find_element(By.CSS_SELECTOR, "#load").click()
    wait_text(b, "#records", lambda t: "device-7" in t and '"temp": 21.5' in t and "source=console" in t,
              "the record in the browser, its value shown as JSON")
    b.find_element(By.CSS_SELECTOR, "#filter").send_keys("no-such-text")
    wait_until(lambda: b.find_elements(By.CSS_SELECTOR, "#no-records"), what="the filter to hide the record")
    # (clear() fires no input event, which is what the page listens to.)
    b.find_element(By.CSS_SELECTOR, "#filter").send_keys(Keys.CONTROL, "a")
    b.find_element(By.CSS_SELECTOR, "#filter").send_keys(Keys.BACKSPACE)
    wait_text(b, "#records", lambda t: "device-7" in t, "the record once the filter is cleared")
    shot(b, "messages")

    # Live mode: a kafka-python record shows within a second of its acknowledgement.
    b.find_element(By.CSS_SELECTOR, "#live").click()
    wait_text(b, "#live-state", lambda t: t.startswith("live:"), "the live stream to open")
    marker = f"live-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap(), acks="all")
    producer.send("from-console", value=json.dumps({"marker": marker}).encode()).get(timeout=15)
    sent = time.monotonic()
    wait_text(b, "#records", lambda t: marker in t, "the live record", timeout=5)
    seen_after = time.monotonic() - sent
    shot(b, "live")
    assert seen_after < 1.0, f"the live record appeared {seen_after:.2f} s after kafka-python's send was acknowledged"
    b.find_element(By.CSS_SELECTOR, "#live").click()

    # A group with lag, which falls to 0 as its consumer reads on.
    for i in range(6):
        producer.send("from-console", key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush(15)
    producer.close()
    consumer = KafkaConsumer("from-console", bootstrap_servers=cluster.bootstrap(), group_id="console-readers",
                             auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=2)
    first = consumer.poll(timeout_ms=10000, max_records=2)
    while not first:
        first = consumer.poll(timeout_ms=1000, max_records=2)
    consumer.commit()
    b.get(base + "/#/groups")
    wait_text(b, "#groups", lambda t: "console-readers" in t, "the group in the list")
    shot(b, "groups")
    b.get(base + "/#/groups/console-readers")
    wait_text(b, "#total-lag", lambda t: t not in ("", "0"), "the group's lag before it reads on")
    # While it has a member, a reset is refused in words.
    Select(b.find_element(By.CSS_SELECTOR, "#reset [name=to]")).select_by_value("earliest")
    b.find_element(By.CSS_SELECTOR, "#reset button[type=submit]").click()
    wait_until(lambda: "inactive" in b.page_source, what="the refusal to reset a group with members")
    read = sum(len(v) for v in first.values())
    while read < 8:
        for msgs in consumer.poll(timeout_ms=1000).values():
            read += len(msgs)
    consumer.commit()
    wait_text(b, "#total-lag", lambda t: t == "0", "the lag to fall to 0")
    wait_until(lambda: b.find_elements(By.CSS_SELECTOR, "#lag-chart canvas"), what="the lag chart")
    shot(b, "group-caught-up")
    consumer.close()
    wait_text(b, "#group-state", lambda t: t == "Empty", "the group to be empty once its consumer left", timeout=30)
    b.find_element(By.CSS_SELECTOR, "#reset button[type=submit]").click()
    wait_text(b, "#reset-result", lambda t: "from-console-0 → 0" in t and "from-console-1 → 0" in t, "the reset")
    wait_text(b, "#total-lag", lambda t: t == "8", "the lag after resetting to the earliest offsets")
    shot(b, "group-reset")

    # An unknown page says so.
    b.get(base + "/#/nowhere")
    wait_until(lambda: "There is no page" in b.page_source, what="the unknown page's message")
    errors = console_errors(b, allowed=("/groups/console-readers/offsets/reset - Failed to load resource: the server responded with a status of 409",))
    assert not errors, errors
