#!/usr/bin/env python3
"""Drive the tracker's customer action pages in headless Chromium, as a customer on a phone would.

For each page given: open it at phone width, check it fits without horizontal scrolling and that
every form field has a label, take a screenshot, fill and submit the form, check the confirmation,
take another screenshot. Prints one JSON line per page; exits 1 if any check fails.

Usage: browser_check_actions.py --pages pages.json --artifacts DIR
pages.json: [{"name": "dispute", "url": "...", "fields": {"reason": "quality"}, "expect": "noté"}]
"""
import argparse
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

PHONE = (390, 844)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={PHONE[0]},{PHONE[1]}", "--lang=fr-FR"):
        options.add_argument(argument)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_window_size(*PHONE)
    return driver


def check_page(driver, page, artifacts):
    problems = []
    driver.get(page["url"])
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.TAG_NAME, "h1"))
    name = page["name"]
    driver.save_screenshot(os.path.join(artifacts, f"{name}-form.png"))
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    if overflow > 0:
        problems.append(f"scrolls sideways by {overflow}px at phone width")
    font = driver.execute_script(
        "return parseFloat(getComputedStyle(document.body).fontSize)")
    if font < 16:
        problems.append(f"body text is {font}px, smaller than 16px")
    if not driver.find_element(By.TAG_NAME, "html").get_attribute("lang"):
        problems.append("the page has no lang attribute")
    for field in driver.find_elements(By.CSS_SELECTOR, "form input, form select, form textarea"):
        field_id = field.get_attribute("id")
        if not field_id or not driver.find_elements(By.CSS_SELECTOR, f"label[for='{field_id}']"):
            problems.append(f"field {field.get_attribute('name')} has no label")
    for field_name, value in page.get("fields", {}).items():
        element = driver.find_element(By.NAME, field_name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        elif element.get_attribute("type") == "date":
            driver.execute_script("arguments[0].value = arguments[1]", element, value)
        else:
            element.clear()
            element.send_keys(value)
    button = driver.find_element(By.CSS_SELECTOR, "form button[type=submit]")
    if button.size["width"] < PHONE[0] * 0.6 or button.size["height"] < 40:
        problems.append(f"the button is small for a thumb: {button.size}")
    button.click()
    WebDriverWait(driver, 10).until(lambda d: page["expect"] in d.page_source)
    driver.save_screenshot(os.path.join(artifacts, f"{name}-done.png"))
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", required=True)
    parser.add_argument("--artifacts", required=True)
    arguments = parser.parse_args()
    os.makedirs(arguments.artifacts, exist_ok=True)
    with open(arguments.pages, encoding="utf-8") as file:
        pages = json.load(file)
    driver = browser()
    failed = False
    try:
        for page in pages:
            try:
                problems = check_page(driver, page, arguments.artifacts)
            except Exception as error:  # a timeout or a missing element is a failed page
                problems = [f"{type(error).__name__}: {error}"]
            failed |= bool(problems)
            print(json.dumps({"page": page["name"], "problems": problems}), flush=True)
    finally:
        driver.quit()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
