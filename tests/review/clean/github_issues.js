// permissions: network, environment
'use strict';

const API = 'https://api.github.com';
const TOKEN_ENV = 'GITHUB_TOKEN';
const PER_PAGE = 20;

async function listIssues(owner, repo) {
  if (!/^[\w.-]+$/.test(owner) || !/^[\w.-]+$/.test(repo)) {
    throw new Error('invalid repository name');
  }
  const headers = { Accept: 'application/vnd.github+json' };
  const token = process.env.GITHUB_TOKEN;
  if (token) {
    headers.Authorization = `Bearer ${token}`;
  }
  const response = await fetch(`${API}/repos/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}/issues?per_page=${PER_PAGE}`, { headers });
  if (!response.ok) {
    throw new Error(`GitHub answered ${response.status}`);
  }
  const issues = await response.json();
  return issues.map((issue) => ({ number: issue.number, title: issue.title, state: issue.state }));
}

module.exports = { listIssues, TOKEN_ENV };
