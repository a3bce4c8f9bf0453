// The context every message carries, taken from the page the call was made on.
// p is [url, title, referrer], captured at call time (by the stub for calls queued before load).

export const pageOf = p => {
  const u = new URL(p[0])
  return { path: u.pathname, referrer: p[2], search: u.search, title: p[1], url: p[0] }
}

export function context(p) {
  const campaign = {}, s = screen
  let utm
  for (const [k, v] of new URL(p[0]).searchParams)
    if (k.startsWith('utm_')) campaign[k == 'utm_campaign' ? 'name' : k.slice(4)] = v, utm = 1
  return {
    page: pageOf(p),
    userAgent: navigator.userAgent,
    locale: navigator.language,
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
    screen: { width: s.width, height: s.height, density: devicePixelRatio },
    library: { name: 'intilery.js', version: VERSION },
    campaign: utm && campaign,
  }
}
