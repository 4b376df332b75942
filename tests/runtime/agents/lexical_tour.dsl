# Literals of every kind, in a small agent without parameters or return type.
metadata {
    plain = "tab\there, quote \" and backslash \\ and unicode \u00e9 \u{1F600}"
    regex = "^\d+\.\d+$"
    multiline = "first line
second line"
    big = 1_000_000
    ratio = 2.5
    negative_free = 0
    on = true
    off = false
    who = anonymous
    key = vault://tokens/service-a/v1.2
}

agent clock {
    capabilities = []
    with a = 30.seconds, b = 5.minutes, c = 2.hours, d = 30s, e = 5m, f = 2h, g = 1d, h = 1w, i = 3months, j = 1y, k = 1_500s, l = 1.5h {
        // an empty body is fine too
    }
}
