"""The web chat page in real headless Chromium: attach an image and audio, ask, watch the streamed answer."""

from __future__ import annotations

import shutil

import httpx
import pytest

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.common.exceptions import WebDriverException

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium / chromedriver not installed (run scripts/test-setup/browser.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    except WebDriverException as err:
        pytest.skip(f"headless Chromium could not start: {err.msg}")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def finished_turns(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, ".turn[data-done='true']")


def api_answer(url: str, messages: list[dict]) -> str:
    payload = {"model": "tiny", "messages": messages, "max_tokens": 64, "temperature": 0}
    return httpx.post(f"{url}/v1/chat/completions", json=payload, timeout=60).json()["choices"][0]["message"]["content"]


def test_image_and_audio_chat_in_headless_chromium(browser, served, tmp_path, media):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image, audio = tmp_path / "red.png", tmp_path / "tone.wav"
    image.write_bytes(media.png())
    audio.write_bytes(media.wav())
    browser.get(f"{served.url}/")
    assert browser.title == "omnifuse chat"
    assert browser.find_element(By.ID, "record").is_displayed()  # 127.0.0.1 is a secure context: the mic is offered
    browser.find_element(By.ID, "image").send_keys(str(image))
    browser.find_element(By.ID, "prompt").send_keys("what color is the circle?")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 60).until(lambda d: len(finished_turns(d)) == 1)
    thumb = browser.find_element(By.CSS_SELECTOR, ".turn.user img.thumb")
    assert thumb.get_attribute("src").startswith("data:image/png;base64,")
    answer = finished_turns(browser)[0].text.removeprefix("Model: ")
    image_part = {"type": "image_url", "image_url": {"url": media.data_uri(media.png(), "image/png")}}
    first = [{"role": "user", "content": [image_part, {"type": "text", "text": "what color is the circle?"}]}]
    assert answer == api_answer(served.url, first).strip()

    browser.find_element(By.ID, "audio").send_keys(str(audio))
    browser.find_element(By.ID, "prompt").send_keys("describe the sound")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 60).until(lambda d: len(finished_turns(d)) == 2)
    second = finished_turns(browser)[1]
    assert "assistant" in second.get_attribute("class"), second.text  # not an error turn
    assert browser.find_elements(By.CSS_SELECTOR, ".turn.error") == []
    assert "[audio: tone.wav]" in browser.find_elements(By.CSS_SELECTOR, ".turn.user")[1].text
