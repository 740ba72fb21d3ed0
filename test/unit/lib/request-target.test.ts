import { describe, expect, it } from 'vitest'
import { parseRequestTarget } from '../../../gateway/lib/request-target.js'

describe('RFC 9112 §3.2 request targets', () => {
  it('origin-form is kept as it is', () => {
    expect(parseRequestTarget('/mcp/x?a=1')).toEqual({ path: '/mcp/x?a=1' })
  })
  it('absolute-form: the path is routed and the authority (lower-cased) is the host', () => {
    expect(parseRequestTarget('http://GW.example:8443/mcp/x?a=1')).toEqual({ path: '/mcp/x?a=1', authority: 'gw.example:8443' })
    expect(parseRequestTarget('HTTPS://[::1]:9/mcp')).toEqual({ path: '/mcp', authority: '[::1]:9' })
    expect(parseRequestTarget('http://gw.example')).toEqual({ path: '/', authority: 'gw.example' })
    expect(parseRequestTarget('http://gw.example?q')).toEqual({ path: '/?q', authority: 'gw.example' })
  })
  it.each(['ftp://gw/mcp', 'http://u:p@gw.example/mcp', 'http://@gw.example/mcp', 'http:///mcp', 'http://gw example/mcp', '/mcp#f', 'http://gw/mcp#f', '*', 'gw.example:443', 'mcp/x', ''])('%j is refused', (t) => {
    expect(parseRequestTarget(t)).toHaveProperty('invalid')
  })
})
