// The context every message carries, taken from the page the call was made on.
// p is [url, title, referrer], captured at call time (by the stub for calls queued before load).

export const pageOf = p => {
  const u = new URL(p[0])
  return { path: u.pathname, referrer: p[2], search: u.search, title: p[1], url: p[0] }
}

// The query parameters of url that start with prefix, by the rest of their name (utm_campaign: name).
export function params(url, prefix, o = {}) {
  for (const [k, v] of new URL(url).searchParams) if (k.startsWith(prefix)) o[k == 'utm_campaign' ? 'name' : k.slice(prefix.length)] = v
  return o
}

export function context(p) {
  const campaign = params(p[0], 'utm_'), s = screen
  return {
    page: pageOf(p),
    userAgent: navigator.userAgent,
    locale: navigator.language,
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
    screen: { width: s.width, height: s.height, density: devicePixelRatio },
    library: { name: 'intilery.js', version: VERSION },
    campaign: Object.keys(campaign)[0] && campaign,
  }
}
