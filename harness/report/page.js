(function(){
const D=JSON.parse(document.getElementById('data').textContent);
// per-example metrics travel as arrays in t.metrics order (smaller pages); objects here
D.tasks.forEach(t=>t.rows.forEach(r=>r.s.forEach(s=>{if(s){const o={};t.metrics.forEach((m,i)=>{if(s.m[i]!==null&&s.m[i]!==undefined)o[m]=s.m[i];});s.m=o;}})));
const two=D.labels.length===2&&D.kind==='comparison';
const PAGE=100;
function el(tag,text,cls){const e=document.createElement(tag);if(text!==undefined&&text!==null)e.textContent=String(text);if(cls)e.className=cls;return e;}
function margin(s,gold){if(!s||!s.ll)return null;let best=-Infinity;s.ll.forEach((v,i)=>{if(i!==gold&&v>best)best=v;});return s.ll[gold]-best;}
function change(t,r){if(!two)return '';const b=r.s[0],a=r.s[1];if(!b||!a)return '';
 if(t.kind==='multiple_choice'){const rb=b.c===r.ref,ra=a.c===r.ref;return rb&&!ra?'right → wrong':ra&&!rb?'wrong → right':'unchanged';}
 return '';}
function delta(r,m){const b=r.s[0],a=r.s[1];if(!b||!a||!(m in b.m)||!(m in a.m))return null;return a.m[m]-b.m[m];}
function fmt(t,m,v){if(v===null||v===undefined)return '–';return t.fraction.includes(m)?(100*v).toFixed(2):(+v).toPrecision(4);}
function words(s){return String(s).split(/\s+/).filter(w=>w.length);}
function diff(a,b){const A=words(a),B=words(b);const frag=document.createDocumentFragment();
 if(A.length*B.length>400000){frag.appendChild(el('span',b));return frag;}
 const n=A.length,m=B.length,L=[];for(let i=0;i<=n;i++){L.push(new Uint16Array(m+1));}
 for(let i=n-1;i>=0;i--)for(let j=m-1;j>=0;j--)L[i][j]=A[i]===B[j]?L[i+1][j+1]+1:Math.max(L[i+1][j],L[i][j+1]);
 let i=0,j=0;while(i<n||j<m){if(i<n&&j<m&&A[i]===B[j]){frag.appendChild(document.createTextNode(A[i]+' '));i++;j++;}
 else if(j<m&&(i>=n||L[i][j+1]>=L[i+1][j])){frag.appendChild(el('ins',B[j]));frag.appendChild(document.createTextNode(' '));j++;}else{frag.appendChild(el('del',A[i]));frag.appendChild(document.createTextNode(' '));i++;}}
 return frag;}
function detail(t,r,cols){const tr=el('tr',null,'detail');const td=el('td');td.colSpan=cols;tr.appendChild(td);
 td.appendChild(el('div',r.in.prompt||'(no input in the samples)','prompt'));
 if(t.kind==='multiple_choice'){const tb=el('table','','endings');const h=el('tr');h.appendChild(el('th','#'));h.appendChild(el('th','ending'));
  D.labels.forEach(l=>h.appendChild(el('th','log-lik '+l)));tb.appendChild(h);
  const n=Math.max(...r.s.filter(s=>s).map(s=>s.ll.length));
  for(let i=0;i<n;i++){const row=el('tr');row.appendChild(el('td',i+(i===r.ref?' ✓ gold':''),i===r.ref?'gold':''));
   row.appendChild(el('td',(r.in.choices||[])[i]||''));
   r.s.forEach(s=>{const c=el('td',s?s.ll[i]:'–',s&&s.c===i?'chosen':'');c.dataset.value=s?s.ll[i]:'';row.appendChild(c);});tb.appendChild(row);}
  td.appendChild(tb);}
 else{td.appendChild(el('div','reference: '+(r.ref===null?'':r.ref),'reference'));
  r.s.forEach((s,k)=>{const d=el('div',null,'side');d.appendChild(el('h4',D.labels[k]));
   if(s){(s.f||[]).forEach(f=>d.appendChild(el('span',f,'flag')));const p=el('div',null,'prediction');
    if(two&&k===1&&r.s[0])p.appendChild(diff(r.s[0].p||'',s.p||''));else p.textContent=s.p||'';d.appendChild(p);}
   td.appendChild(d);});}
 const mt=el('table');const mh=el('tr');mh.appendChild(el('th','metric'));D.labels.forEach(l=>mh.appendChild(el('th',l)));mt.appendChild(mh);
 t.metrics.forEach(m=>{const row=el('tr');row.appendChild(el('td',t.labels[m]));r.s.forEach(s=>row.appendChild(el('td',s?fmt(t,m,s.m[m]):'–')));mt.appendChild(row);});
 td.appendChild(mt);return tr;}
function taskView(t){
 const sec=el('section',null,'task');sec.dataset.task=t.name;sec.appendChild(el('h3',t.name+' ('+t.rows.length+' examples)'));
 const ctl=el('div',null,'controls');sec.appendChild(ctl);
 const filter=el('select');filter.className='filter';
 const opts=t.kind==='multiple_choice'&&two?['all','right → wrong','wrong → right','unchanged','confidence moved most']:['all'];
 opts.forEach(o=>{const op=el('option',o);op.value=o;filter.appendChild(op);});ctl.appendChild(filter);
 const sort=el('select');sort.className='sort';const so=[['id','order: as run']];
 if(two)t.metrics.forEach(m=>{so.push(['d-'+m,'Δ '+t.labels[m]+' (most negative first)']);so.push(['d+'+m,'Δ '+t.labels[m]+' (most positive first)']);});
 else t.metrics.forEach(m=>so.push(['v-'+m,t.labels[m]+' (lowest first)']));
 so.forEach(([v,l])=>{const op=el('option',l);op.value=v;sort.appendChild(op);});ctl.appendChild(sort);
 const search=el('input');search.type='search';search.placeholder='search';search.className='search';ctl.appendChild(search);
 const count=el('span',null,'count');ctl.appendChild(count);
 const tbl=el('table',null,'examples');const head=el('tr');
 const cols=['id'].concat(two?['change']:[],['input'],D.labels,two?['Δ']:[]);cols.forEach(c=>head.appendChild(el('th',c)));
 const th=el('thead');th.appendChild(head);tbl.appendChild(th);const body=el('tbody');tbl.appendChild(body);sec.appendChild(tbl);
 const more=el('button','show more','more');sec.appendChild(more);
 let rows=[],shown=0,key=null;
 function summary(s){if(!s)return '–';if(t.kind==='multiple_choice')return 'chose '+s.c;return (s.f&&s.f.length?'['+s.f.join(', ')+'] ':'')+(s.p||'');}
 function render(){const stop=Math.min(rows.length,shown+PAGE);
  for(let i=shown;i<stop;i++){const r=rows[i];const tr=el('tr',null,'row');tr.dataset.id=r.id;
   tr.appendChild(el('td',r.id));if(two)tr.appendChild(el('td',change(t,r),'change'));
   tr.appendChild(el('td',(r.in.prompt||'').slice(0,120)));r.s.forEach(s=>tr.appendChild(el('td',summary(s).slice(0,160))));
   if(two){const d=t.kind==='multiple_choice'?(r.s[0]&&r.s[1]?margin(r.s[1],r.ref)-margin(r.s[0],r.ref):null):(key?delta(r,key):null);
    const c=el('td',d===null?'':(t.kind==='multiple_choice'?d.toFixed(3):fmt(t,key,d)),'delta');c.dataset.value=d===null?'':d;tr.appendChild(c);}
   tr.addEventListener('click',()=>{const nx=tr.nextSibling;if(nx&&nx.className==='detail'){nx.remove();return;}tr.after(detail(t,r,cols.length));});
   body.appendChild(tr);}
  shown=stop;more.style.display=shown<rows.length?'':'none';count.textContent=rows.length+' of '+t.rows.length+' shown by this filter';}
 function update(){let rs=t.rows.slice();const f=filter.value,q=search.value.toLowerCase(),sv=sort.value;
  if(f!=='all'&&f!=='confidence moved most')rs=rs.filter(r=>change(t,r)===f);
  if(q)rs=rs.filter(r=>(r.id+' '+(r.in.prompt||'')+' '+r.s.map(s=>s&&s.p||'').join(' ')).toLowerCase().includes(q));
  key=t.kind==='multiple_choice'?null:(sv.length>2?sv.slice(2):(t.metrics.find(m=>t.fraction.includes(m))||t.metrics[0]||null));
  if(f==='confidence moved most'){const mv=r=>r.s[0]&&r.s[1]?Math.abs(margin(r.s[1],r.ref)-margin(r.s[0],r.ref)):-1;rs.sort((a,b)=>mv(b)-mv(a));}
  else if(sv.startsWith('d')){const sign=sv[1]==='-'?1:-1,m=sv.slice(2);rs.sort((a,b)=>{const x=delta(a,m),y=delta(b,m);return x===null?1:y===null?-1:sign*(x-y);});}
  else if(sv.startsWith('v')){const m=sv.slice(2);rs.sort((a,b)=>((a.s[0]||{m:{}}).m[m]??Infinity)-((b.s[0]||{m:{}}).m[m]??Infinity));}
  rows=rs;shown=0;body.textContent='';render();}
 filter.addEventListener('change',update);sort.addEventListener('change',update);search.addEventListener('input',update);more.addEventListener('click',render);
 update();return sec;}
const host=document.getElementById('tasks');D.tasks.forEach(t=>host.appendChild(taskView(t)));
performance.mark('harness-ready');document.body.dataset.ready='1';
})();
