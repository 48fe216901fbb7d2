// Plays the user's browser on Warden's built-in authorization server: open the consent page,
// submit the login and approval form with its CSRF cookie, return the redirect's query.
export async function approve(authorizationUrl, user, password) {
  const page = await fetch(authorizationUrl, { redirect: 'manual' });
  if (page.status !== 200) throw new Error(`consent page: HTTP ${page.status} ${await page.text()}`);
  const cookie = page.headers.get('set-cookie').split(';')[0];
  const html = await page.text();
  const field = (name) => html.match(new RegExp(`name="${name}" value="([^"]*)"`))[1];
  const form = new URLSearchParams({
    request_id: field('request_id'), csrf: field('csrf'), username: user, password, decision: 'approve'
  });
  const post = await fetch(new URL('/authorize', authorizationUrl), {
    method: 'POST', redirect: 'manual', body: form,
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }
  });
  if (post.status !== 303) throw new Error(`consent: HTTP ${post.status}`);
  return new URL(post.headers.get('location')).searchParams;
}
