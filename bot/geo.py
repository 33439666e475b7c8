"""Points on the map: a shared location (``m.location``'s ``geo:`` URI, RFC 5870) and the
distance between two points, for telling an on-site visit from one made elsewhere."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG); the error is well under the on-site radius

# geo:lat,lon[,alt][;u=uncertainty][;other params]
_GEO = re.compile(
    r"^geo:(?P<lat>[-+]?\d+(?:\.\d+)?),(?P<lon>[-+]?\d+(?:\.\d+)?)(?:,[-+]?\d+(?:\.\d+)?)?"
    r"(?P<params>(?:;[^;]*)*)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GeoPoint:
    latitude: float
    longitude: float
    accuracy_m: float | None = None  # the ``u=`` of the URI, when the phone gave one

    def label(self) -> str:
        """The point as people read it in a record: "27.63000, 113.85000 (±20 m)"."""
        accuracy = f" (±{self.accuracy_m:.0f} m)" if self.accuracy_m is not None else ""
        return f"{self.latitude:.5f}, {self.longitude:.5f}{accuracy}"

    def as_dict(self) -> dict[str, float | None]:
        return {"lat": self.latitude, "lon": self.longitude, "accuracy": self.accuracy_m}

    @classmethod
    def from_dict(cls, data: dict[str, float | None]) -> GeoPoint:
        lat, lon = data["lat"], data["lon"]
        assert lat is not None and lon is not None
        return cls(float(lat), float(lon), data.get("accuracy"))


def parse_geo_uri(uri: object) -> GeoPoint | None:
    """The point of a ``geo:`` URI, or None when it is not one or lies off the globe."""
    if not isinstance(uri, str):
        return None
    m = _GEO.match(uri.strip())
    if m is None:
        return None
    lat, lon = float(m["lat"]), float(m["lon"])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    accuracy = None
    for param in (m["params"] or "").split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "u":
            try:
                accuracy = float(value)
            except ValueError:
                accuracy = None
            # An uncertainty is a length: "nan", "inf" or "-5" is none (and NaN is no JSON).
            if accuracy is not None and not (math.isfinite(accuracy) and accuracy >= 0):
                accuracy = None
    return GeoPoint(lat, lon, accuracy)


def distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance in metres (haversine)."""
    phi1, phi2 = math.radians(a.latitude), math.radians(b.latitude)
    dphi = phi2 - phi1
    dlmb = math.radians(b.longitude - a.longitude)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
