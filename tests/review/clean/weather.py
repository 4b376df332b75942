# permissions: network, environment
"""Current weather for a city, from a fixed public API."""

import os
from dataclasses import dataclass

import requests

API_URL = "https://api.open-meteo.com/v1/forecast"
GEOCODE_URL = "https://geocoding-api.open-meteo.com/v1/search"
TOKEN_HEADER = "Authorization"
API_KEY_ENV = "WEATHER_API_KEY"
TIMEOUT_SECONDS = 10


@dataclass
class Forecast:
    city: str
    temperature: float
    wind_speed: float


def locate(city: str) -> tuple[float, float]:
    response = requests.get(GEOCODE_URL, params={"name": city, "count": 1}, timeout=TIMEOUT_SECONDS)
    response.raise_for_status()
    results = response.json().get("results") or []
    if not results:
        raise ValueError(f"unknown city: {city}")
    return results[0]["latitude"], results[0]["longitude"]


def forecast(city: str) -> Forecast:
    latitude, longitude = locate(city)
    headers = {}
    api_key = os.environ.get(API_KEY_ENV)
    if api_key:
        headers[TOKEN_HEADER] = f"Bearer {api_key}"
    response = requests.get(
        API_URL,
        params={"latitude": latitude, "longitude": longitude, "current_weather": "true"},
        headers=headers,
        timeout=TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    current = response.json()["current_weather"]
    return Forecast(city=city, temperature=current["temperature"], wind_speed=current["windspeed"])


def run(arguments: dict) -> dict:
    result = forecast(str(arguments["city"]).strip())
    return {"city": result.city, "temperature_c": result.temperature, "wind_kmh": result.wind_speed}
