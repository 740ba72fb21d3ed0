/**
 * RFC 9112 §3.2: the request-target forms an origin server sees. Only origin-form (`/path?q`) is
 * routed; absolute-form (`http://host/path?q`, what a client talking to a proxy sends) must be
 * accepted too (§3.2.2), and then its authority, not the Host header, names the host (it is what
 * the DNS-rebinding check must look at, or a client could pair an allowed Host with any target).
 * Anything else (authority-form, asterisk-form, relative paths) has no meaning for an MCP route.
 */
export type RequestTarget = { readonly path: string; readonly authority?: string } | { readonly invalid: string }

// RFC 3986 host: reg-name characters or an IP literal, then an optional port.
const AUTHORITY = /^(?:[A-Za-z0-9._~!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?$/

export function parseRequestTarget(target: string): RequestTarget {
  // '#' is not allowed in any form (§3.2); left in, a route path would not match itself.
  if (target.includes('#')) return { invalid: 'a request target has no fragment' }
  if (target.startsWith('/')) return { path: target }
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(target)
  if (!m) return { invalid: 'the request target is neither origin-form nor absolute-form' }
  const [, scheme, authority, rest] = m as unknown as [string, string, string, string]
  if (!/^https?$/i.test(scheme)) return { invalid: 'absolute-form target with a scheme other than http or https' }
  // RFC 9110 §4.2.4: userinfo in an http(s) target is an attack (it is how phishing links hide the host).
  if (authority.includes('@')) return { invalid: 'absolute-form target with userinfo' }
  if (!AUTHORITY.test(authority)) return { invalid: 'absolute-form target without a valid host' }
  // §3.2.1: an empty path is "/".
  return { path: rest === '' || rest.startsWith('?') ? `/${rest}` : rest, authority: authority.toLowerCase() }
}
