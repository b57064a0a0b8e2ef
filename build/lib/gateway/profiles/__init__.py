"""Device profiles: declarative register maps and line formats, loaded from YAML."""
